"""Live events of jobs for waiting clients, without Flask: the per-process hub
(`hub`: one Redis reader fanned out) and the server-sent-events body (`sse`).
The streams themselves are written by the store (`app.jobs.events`)."""
