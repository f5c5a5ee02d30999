"""Where the command-line client finds the service and its API key.

The URL: ``--url``, else ``COLLECTQ_URL``, else ``url`` in the config file, else
``http://127.0.0.1:8000`` (a local `collectq up`). The key: ``COLLECTQ_API_KEY``, else the
file named by ``COLLECTQ_API_KEY_FILE`` (a Docker/Kubernetes secret), else ``api_key`` in
the config file. Never an option: a key on the command line ends up in the shell's
history and in every process listing.

The config file is TOML, ``$COLLECTQ_CLIENT_CONFIG`` or
``$XDG_CONFIG_HOME/collectq/client.toml`` (``~/.config/collectq/client.toml``)::

    url = "https://collectq.example.org"
    api_key = "cq_…"

Like ssh with its private keys, the client refuses a config file that holds a key and
that others may read or write (any group/other permission bit): ``chmod 600`` it.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CONFIG_VAR",
    "DEFAULT_URL",
    "KEY_FILE_VAR",
    "KEY_VAR",
    "URL_VAR",
    "ClientConfig",
    "ConfigProblem",
    "check_private",
    "config_path",
    "load_client_config",
]

URL_VAR = "COLLECTQ_URL"
KEY_VAR = "COLLECTQ_API_KEY"
KEY_FILE_VAR = "COLLECTQ_API_KEY_FILE"
CONFIG_VAR = "COLLECTQ_CLIENT_CONFIG"
DEFAULT_URL = "http://127.0.0.1:8000"
_KNOWN = frozenset({"url", "api_key"})


class ConfigProblem(Exception):
    """The client's configuration cannot be used (said in the message)."""


@dataclass(frozen=True)
class ClientConfig:
    url: str
    api_key: str | None
    key_source: str | None  # where the key came from, for "unauthorized" hints

    def __repr__(self) -> str:  # never the key
        return f"ClientConfig(url={self.url!r}, key_source={self.key_source!r})"


def config_path(env: Mapping[str, str]) -> tuple[Path, bool]:
    """(the config file's path, whether it was named explicitly)."""
    if env.get(CONFIG_VAR):
        return Path(env[CONFIG_VAR]).expanduser(), True
    base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "collectq" / "client.toml", False


def _read_file(path: Path, explicit: bool) -> dict[str, object]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        if explicit:
            raise ConfigProblem(f"{path} ({CONFIG_VAR}) does not exist") from None
        return {}
    except OSError as exc:
        raise ConfigProblem(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigProblem(f"{path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - _KNOWN)
    if unknown:
        raise ConfigProblem(
            f"{path}: unknown setting(s) {', '.join(unknown)} (known: url, api_key)"
        )
    for name in _KNOWN & set(data):
        if not isinstance(data[name], str) or not data[name]:
            raise ConfigProblem(f"{path}: {name} must be a non-empty string")
    if "api_key" in data:
        check_private(path)
    return data


def check_private(path: Path) -> None:
    """Refuse a secret-holding file that others may read or write (as ssh does)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigProblem(
            f"{path} holds an API key but its mode is {mode:04o} (others may read it): "
            f"run `chmod 600 {path}`"
        )


def load_client_config(url: str | None, env: Mapping[str, str] | None = None) -> ClientConfig:
    """The service URL and API key (see the module docstring for the order)."""
    env = os.environ if env is None else env
    path, explicit = config_path(env)
    data = _read_file(path, explicit)
    key, source = env.get(KEY_VAR) or None, KEY_VAR
    if key is None and env.get(KEY_FILE_VAR):
        key_file = Path(env[KEY_FILE_VAR])
        try:
            key, source = key_file.read_text().strip() or None, str(key_file)
        except OSError as exc:
            raise ConfigProblem(
                f"cannot read {key_file} ({KEY_FILE_VAR}): {exc.strerror}"
            ) from None
    if key is None and "api_key" in data:
        key, source = str(data["api_key"]), str(path)
    base = url or env.get(URL_VAR) or str(data.get("url") or "") or DEFAULT_URL
    if not base.startswith(("http://", "https://")):
        raise ConfigProblem(f"{base!r} is not an http(s) URL (--url, {URL_VAR} or url in {path})")
    return ClientConfig(base.rstrip("/"), key, source if key else None)
