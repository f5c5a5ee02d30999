"""gunicorn's logger class: the master's and workers' lines through `app.logs`.

gunicorn configures its own handlers and formats (``[2026-…] [123] [INFO] Booting
worker``); this class configures logging as every collectq process does instead, and
lets ``gunicorn.error`` propagate to it: JSON or text like the rest. gunicorn's access
log stays off: the API writes one access line per request itself (``collectq.access``,
`api.requests`), with the request id, route and owner gunicorn does not know.
Named by the gunicorn configuration (`app.gunicorn_conf`, ``logger_class``).
"""

from __future__ import annotations

import logging
from typing import Any

from gunicorn import glogging

from app.logs import configure_logging
from app.settings import load_settings

__all__ = ["GunicornLogger"]


class GunicornLogger(glogging.Logger):  # type: ignore[misc]
    def setup(self, cfg: Any) -> None:
        self.cfg = cfg
        configure_logging(load_settings())
        self.loglevel = self.LOG_LEVELS.get(cfg.loglevel.lower(), logging.INFO)
        self.error_log.setLevel(self.loglevel)
        self.error_log.propagate = True
        self.access_log.propagate = False

    @property
    def access_log_enabled(self) -> bool:
        return False  # gunicorn then skips building the access atoms of each request

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        """Nothing: the access line is the API's (``collectq.access``)."""
