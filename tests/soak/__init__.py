"""The chaos soak (issue 17): `make soak`, `python -m tests.soak`; not a pytest suite.

The whole service (own Redis with AOF, own RabbitMQ node, the API under gunicorn, a worker
per queue, beat) under a steady submit load against local targets, with a fault every
couple of minutes; at the end every accepted job is accounted for, and the processes'
memory and fds and Redis's size are checked for growth. Modules: `stack` (the processes
by role), `targets`, `load`, `faults`, `tracker` (what became of each job), `sampler`,
`checks`, `report`. README "Soak"; docs/decisions.md "Reliability: the chaos soak".
"""
