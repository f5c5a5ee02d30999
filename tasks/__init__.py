"""Celery tasks: thin adapters between the broker, the collectors and the job store."""
