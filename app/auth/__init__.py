"""Identity: API keys, JWTs, and the Principal a request acts as (no Flask here)."""
