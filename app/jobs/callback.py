"""A job's callback URL at submit: the network guard's decision, without any lookup.

What can be judged without resolving a name is judged here, so a client gets a
clear 422 naming `callback_url`: the URL's form (`netguard.check_url`) and, for an
IP literal or a ``localhost`` name (RFC 6761: always loopback), the address under
the deployment's policy. A host name is not resolved at submit (no DNS from the
API on a client's behalf, no slow submits): the webhook sender connects through the
guard (`collectors.guardedpool`), which resolves, checks every address and connects
to the checked one, so a name that resolves (or rebinds) to a blocked address fails
its delivery with `blocked_address`.
"""

from __future__ import annotations

import ipaddress

from app.errors import ValidationFailed
from collectors import netguard
from collectors.base import CollectorError, NetworkPolicy

__all__ = ["check_callback_url"]

_LOOPBACK = ipaddress.ip_address("127.0.0.1")


def check_callback_url(url: str, policy: NetworkPolicy, field: str = "callback_url") -> None:
    """Raise ValidationFailed naming `field` if the guard refuses `url` already now."""
    try:
        host = (netguard.check_url(url).hostname or "").strip("[]")
        if host == "localhost" or host.endswith(".localhost"):
            address: netguard.IPAddress = _LOOPBACK
        else:
            try:
                address = ipaddress.ip_address(host.split("%", 1)[0])
            except ValueError:
                return  # a name: judged at delivery, by the guarded connection
        netguard.check_address(address, policy, subject=repr(host))
    except CollectorError as exc:
        raise ValidationFailed({field: [str(exc)]}) from exc
