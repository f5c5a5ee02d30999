"""Signed webhooks: a job's end announced to its callback URL (Standard Webhooks).

`finalize` runs once per final job (``jobs.finished``) and plans the deliveries;
`deliver` sends one (``webhooks.deliver``), retried with backoff; `secrets` keeps
each owner's signing secret; `deliveries` records every attempt.
"""
