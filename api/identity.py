"""Who is calling, and may they: credentials → Principal, and each route's scope.

Every view is marked with `requires(scope, route_class)` or `public`; a route
without a mark needs the `admin` scope (fail closed). Two request hooks, with
the rate limiter between them (`api.init_api` registers them in order):

1. `authenticate` reads ``Authorization: Bearer …`` or ``X-API-Key`` and
   stores the Principal or the reason it failed, without answering yet, so
   the limiter can count failed attempts per client address;
2. `authorize` answers 401 (no or bad credentials) or 403 (missing scope). Every
   refused credential gets the same 401 (`app.auth.failures`); only mistakes in the
   headers themselves (none, both, not Bearer) are told apart, as they reveal nothing.

Owner isolation: `current_owner()` is who new records belong to;
`owner_filter()` is the owner reads are restricted to (None for admin).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, request
from flask_smorest import Blueprint
from werkzeug.http import http_date

from app.auth.apikeys import ADMIN
from app.auth.failures import CredentialRejected
from app.auth.principal import Principal, open_principal
from app.errors import Forbidden, Unauthorized
from app.logcontext import bind
from app.runtime import runtime

__all__ = [
    "AUTHENTICATED",
    "NOTICE_HEADERS",
    "PUBLIC_ENDPOINTS",
    "RoutePolicy",
    "actor",
    "current_owner",
    "init_authenticate",
    "init_authorize",
    "owner_filter",
    "principal",
    "public",
    "requires",
    "requires_credential",
    "route_class",
]

log = logging.getLogger("collectq.auth")
F = TypeVar("F", bound=Callable[..., Any])
MAX_CREDENTIAL = 4096
# Endpoints that flask-smorest and Flask add themselves (the OpenAPI document, Swagger UI).
PUBLIC_ENDPOINTS = frozenset({"api-docs.openapi_json", "api-docs.openapi_swagger_ui"})
_ATTR = "_collectq_policy"
# The pseudo-scope of routes any valid credential may call (a key rotating itself).
AUTHENTICATED = "authenticated"
SELF_ROTATE_PATH = "/v1/keys/self/rotate"
# What the answers to a flagged key carry (RFC 9745 Deprecation, RFC 8594 Sunset, a link
# to the route that replaces the key).
NOTICE_HEADERS = ["Deprecation", "Sunset", "Link"]
_SECURITY: list[dict[str, list[str]]] = [{"ApiKey": []}, {"Bearer": []}]


@dataclass(frozen=True)
class RoutePolicy:
    scope: str | None  # None: public
    route_class: str | None  # rate-limit class: submit | read | admin; None: not limited


def _problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }


def _marked(policy: RoutePolicy, responses: dict[str, Any]) -> Callable[[F], F]:
    """Mark a view with `policy`, documented with `responses` and the credentials."""
    doc = Blueprint.doc(security=_SECURITY, responses=responses)

    def mark(fn: F) -> F:
        out: F = doc(fn)
        setattr(out, _ATTR, policy)
        return out

    return mark


def requires(scope: str, route_class: str) -> Callable[[F], F]:
    """Mark a view: callers need `scope`; limited as `route_class`. Documents it in OpenAPI."""
    return _marked(
        RoutePolicy(scope, route_class),
        {
            "401": _problem_response("Missing or invalid credentials"),
            "403": _problem_response(f"The credential lacks the {scope!r} scope"),
            "429": _problem_response("Rate limit or queued-jobs quota exceeded"),
        },
    )


def requires_credential(route_class: str) -> Callable[[F], F]:
    """Mark a view any valid credential may call, whatever its scopes."""
    return _marked(
        RoutePolicy(AUTHENTICATED, route_class),
        {
            "401": _problem_response("Missing or invalid credentials"),
            "429": _problem_response("Rate limit exceeded"),
        },
    )


def public(fn: F) -> F:
    """Mark a view open to anyone (health and readiness probes)."""
    setattr(fn, _ATTR, RoutePolicy(None, None))
    return fn


def _policy() -> RoutePolicy | None:
    """The policy of the matched view; None when routing failed (404/405 follow)."""
    endpoint = request.endpoint
    if endpoint is None:
        return None
    if endpoint in PUBLIC_ENDPOINTS:
        return RoutePolicy(None, None)
    view = current_app.view_functions.get(endpoint)
    view_class = getattr(view, "view_class", None)
    if view_class is not None:  # a MethodView: the policy sits on the method
        method = "get" if request.method == "HEAD" else request.method.lower()
        view = getattr(view_class, method, None)
    policy = getattr(view, _ATTR, None)
    return policy if isinstance(policy, RoutePolicy) else RoutePolicy(ADMIN, "admin")


def route_class() -> str | None:
    """The rate-limit class of the current request (None: not limited)."""
    policy: RoutePolicy | None = g.get("route_policy")
    return policy.route_class if policy else None


def _credential() -> str | None:
    header = request.headers.get("Authorization")
    api_key = request.headers.get("X-API-Key")
    if header is not None and api_key is not None:
        raise Unauthorized("send one credential, not both Authorization and X-API-Key")
    if api_key is not None:
        token = api_key.strip()
    elif header is not None:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise Unauthorized("use the Bearer scheme: Authorization: Bearer <token>")
        token = token.strip()
    else:
        return None
    if not token or len(token) > MAX_CREDENTIAL:
        raise Unauthorized("malformed credentials")
    return token


def _authenticate() -> None:
    g.principal, g.auth_error = None, None
    policy = g.route_policy = _policy()
    if policy is None or policy.scope is None or request.method == "OPTIONS":
        return  # open, unrouted, or a CORS preflight (which never carries credentials)
    rt = runtime()
    if not rt.settings.auth:
        g.principal = open_principal()
        bind(owner=g.principal.owner)
        return
    try:
        token = _credential()
        if token is None:
            raise Unauthorized("authentication required: send an API key or a JWT", error=None)
        g.principal = rt.auth.authenticate(token, request.remote_addr)
        bind(owner=g.principal.owner)  # the request's later log lines carry it
    except Unauthorized as exc:
        g.auth_error = exc
        # The client gets one answer for every refused credential (CredentialRejected); the
        # log gets the reason, never the credential: enough to debug a client, nothing to steal.
        reason = exc.reason if isinstance(exc, CredentialRejected) else exc.detail
        log.info("authentication failed: %s", reason, extra={"client": request.remote_addr})


def _authorize() -> None:
    error: Unauthorized | None = g.get("auth_error")
    if error is not None:
        raise error
    policy: RoutePolicy | None = g.get("route_policy")
    who: Principal | None = g.get("principal")
    if policy is None or policy.scope is None or who is None:
        return
    if policy.scope != AUTHENTICATED and not who.has(policy.scope):
        raise Forbidden(policy.scope)


def _key_notice(response: Response) -> Response:
    """Tell a key past its rotation period, or about to expire, in every answer."""
    who: Principal | None = g.get("principal")
    notice = who.notice if who is not None else None
    if notice is None:
        return response
    response.headers["Deprecation"] = f"@{int(notice.since)}"
    if notice.sunset is not None:
        response.headers["Sunset"] = http_date(notice.sunset)
    response.headers.add("Link", f'<{SELF_ROTATE_PATH}>; rel="deprecation"')
    return response


def init_authenticate(app: Flask) -> None:
    app.before_request(_authenticate)


def init_authorize(app: Flask) -> None:
    app.before_request(_authorize)
    app.after_request(_key_notice)


def principal() -> Principal:
    who: Principal | None = g.get("principal")
    if who is None:  # a view marked public asked for an owner: a programming error
        raise Unauthorized("authentication required", error=None)
    return who


def actor() -> str:
    """Who is acting, for an audit trail: ``key:{prefix}``, ``jwt:{issuer}:{sub}``."""
    return principal().client_id


def current_owner() -> str:
    """The owner new records are stored under."""
    return principal().owner


def owner_filter() -> str | None:
    """The owner reads are restricted to; None (admin) sees every owner's records."""
    who = principal()
    return None if who.is_admin else who.owner
