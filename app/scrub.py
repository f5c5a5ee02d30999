"""Hiding credentials in text: the one scrubber of log lines (`app.logs`) and Sentry events
(`app.errortracking`). The last line of defence, not the first: call sites log no secret.

What it hides, wherever it stands in the text (a message, a traceback, a JSON line):
the values of Authorization, Proxy-Authorization, X-API-Key and (Set-)Cookie header
lines; ``Bearer``/``Basic`` credentials; the secret of an API key (``cq_<prefix>_***``:
the prefix is the key's public id and stays); JWTs; a URL's userinfo
(``scheme://user:***@host``, a lone token ``scheme://***@host``); and ``name=value``
parameters whose name says password, token, secret, key, signature, session or auth.

No replacement eats a backslash or a quote: a scrubbed JSON line stays valid JSON.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "scrub_text"]

MASK = "***"

_SENSITIVE_PARAM = (
    r"[\w.-]*(?:pass(?:word|wd)?|pwd|secret|token|api[_-]?key|apikey|access[_-]?key"
    r"|private[_-]?key|signature|sig|credentials?|session|auth)[\w.-]*|key"
)
# (pattern, replacement), applied in order.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # header lines and header-like pairs: "Authorization: Bearer …", "'X-API-Key': '…'"
    (
        re.compile(
            r"(?i)\b((?:proxy-)?authorization|x-api-key|(?:set-)?cookie)"
            r"(\\?[\"']?\s*[:=]\s*(?:\\?[\"'])?)[^\r\n\"'\\]+"
        ),
        rf"\1\2{MASK}",
    ),
    (re.compile(r"(?i)\b(bearer|basic)\s+[^\s,;\"'\\]+"), rf"\1 {MASK}"),
    (re.compile(r"\b(cq_[0-9a-z]{12})_[0-9A-Za-z]{8,}"), rf"\1_{MASK}"),
    (re.compile(r"\beyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*"), MASK),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@\"'\\]*):[^/\s@\"'\\]+@"), rf"\1:{MASK}@"),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@\"'\\]+@"), rf"\1{MASK}@"),
    # ?token=…, &password=…, password=… and password="…" in text
    (
        re.compile(rf"(?i)(^|[?&;\s,(\"'])({_SENSITIVE_PARAM})=((?:\\?[\"'])?)[^&#\s\"',;)\\]+"),
        rf"\1\2=\3{MASK}",
    ),
)


def scrub_text(text: str) -> str:
    """`text` with every recognised credential replaced by ``***``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
