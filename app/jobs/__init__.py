"""The job domain: a job's records, states and way through the broker, without Flask.

HTTP → `service` (submit, get, wait, cancel) → `store` (Redis, atomic `lua` scripts)
and `broker` (publish) → a task → `collect` (one collector of one job) → `store`.
`reaper` keeps no job stuck; `breaker` and `hostcap` guard target hosts.
"""
