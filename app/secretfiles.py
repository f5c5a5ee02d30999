"""Secret files re-read while running: the ``COLLECTQ_*_FILE`` variables and their contents.

Docker and Kubernetes mount secrets as files, and Kubernetes updates a mounted secret in
place (a new directory, then the ``..data`` symlink swapped to it), so a file's *contents*
are compared (sha256), never its mtime or inode. A `SecretWatcher` holds the fingerprint the
running settings were loaded from; its thread polls every ``COLLECTQ_SECRET_WATCH_INTERVAL``
seconds and asks the process to reload (the API's gunicorn master and a worker: SIGHUP to
itself) when a file changed. The reload itself goes through `approve_reload`, which loads the
settings anew and refuses to reload into a configuration that does not load: the process
keeps its old settings and says which variable is wrong (never a value).

Nothing here runs at import; each process starts its own watcher (docs/operations.md,
"Rotating secrets").
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Mapping

from app.options import PREFIX
from app.settings import ConfigError, Settings, load_settings

__all__ = ["FILE_SUFFIX", "SecretWatcher", "approve_reload", "fingerprint", "watched_files"]

FILE_SUFFIX = "_FILE"
Fingerprint = dict[str, str]  # variable → sha256 of its file ("" when unreadable)

log = logging.getLogger("collectq.secrets")


def watched_files(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``COLLECTQ_<NAME>_FILE`` variables set in `environ`: variable → path."""
    return {
        var: path
        for var, path in environ.items()
        if var.startswith(PREFIX) and var.endswith(FILE_SUFFIX) and path
    }


def fingerprint(files: Mapping[str, str]) -> Fingerprint:
    """The sha256 of each file's contents, read through symlinks as the loader reads it;
    an unreadable file counts as empty contents (its change is still a change)."""
    out: Fingerprint = {}
    for var, path in files.items():
        try:
            with open(path, "rb") as f:
                out[var] = hashlib.sha256(f.read()).hexdigest()
        except OSError:
            out[var] = ""
    return out


class SecretWatcher:
    """The secret files of this process and the fingerprint its settings came from."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.files = watched_files(os.environ if environ is None else environ)
        self._accepted = fingerprint(self.files)
        self._rejected: Fingerprint | None = None  # a broken state already reported
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def changes(self) -> tuple[list[str], Fingerprint]:
        """The variables whose file differs from the accepted one, and the new fingerprint."""
        now = fingerprint(self.files)
        return sorted(v for v in self.files if now[v] != self._accepted[v]), now

    def accept(self, now: Fingerprint) -> None:
        """The process (re)loaded its settings from these contents."""
        self._accepted, self._rejected = now, None

    def reject(self, now: Fingerprint) -> None:
        """These contents do not load: not reported again until the files change once more."""
        self._rejected = now

    def poll(self) -> list[str]:
        """The changed variables worth a reload (nothing while a rejected state persists)."""
        names, now = self.changes()
        if not names or now == self._rejected:
            return []
        return names

    def start(self, interval: float, notify: Callable[[list[str]], None]) -> None:
        """Poll every `interval` seconds in a daemon thread (not at all for 0 or no files);
        `notify(changed variables)` asks the process to reload."""
        if interval <= 0 or not self.files or self._thread is not None:
            return

        def run() -> None:
            while not self._stop.wait(interval):
                names = self.poll()
                if names:
                    notify(names)

        self._thread = threading.Thread(target=run, name="collectq-secret-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


def approve_reload(watcher: SecretWatcher, process: str) -> Settings | None:
    """Load the settings anew for a reload (a file changed, or SIGHUP by hand).

    The fresh settings when they load (one log line naming the changed variables); None when
    they do not: an error names each bad variable, never a value, and the process keeps
    running on the settings it has.
    """
    names, now = watcher.changes()
    changed = ", ".join(names) or "no secret file"
    try:
        settings = load_settings()
    except ConfigError as exc:
        watcher.reject(now)
        log.error(
            "%s: not reloading, the configuration is invalid (%s; changed: %s): "
            "still running on the previous settings",
            process,
            ", ".join(sorted(exc.errors)),
            changed,
        )
        return None
    watcher.accept(now)
    log.info("%s: reloading settings (changed: %s)", process, changed)
    return settings
