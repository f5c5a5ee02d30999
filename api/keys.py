"""/v1/keys (admin scope): create, list, show, rotate, revoke API keys, and a key's audit
trail; /v1/keys/self/rotate: any key replaces itself."""

from __future__ import annotations

import time
from typing import Any

from flask.views import MethodView

from api.identity import actor, principal, requires, requires_credential
from api.requests import Blueprint
from app.auth.apikeys import ApiKey
from app.errors import Conflict
from app.runtime import Runtime, runtime
from schemas.keys import (
    KeyCreatedSchema,
    KeyCreateSchema,
    KeyEventListArgsSchema,
    KeyEventListSchema,
    KeyListArgsSchema,
    KeyListSchema,
    KeyRotatedSchema,
    KeyRotateSchema,
    KeySchema,
)

__all__ = ["blp"]

blp = Blueprint("keys", __name__, url_prefix="/v1/keys", description="API keys")


def _public(rt: Runtime, key: ApiKey) -> dict[str, Any]:
    return key.public(warning=rt.settings.key_expiry_warning)


@blp.route("")
class Keys(MethodView):
    @requires("admin", "admin")
    @blp.arguments(KeyCreateSchema)
    @blp.response(201, KeyCreatedSchema, description="The token is in this answer only")
    def post(self, data: dict[str, Any]) -> Any:
        """Create a key for an owner; the token is shown once."""
        rt = runtime()
        expires_in = data.get("expires_in")
        key, token = rt.keys.create(
            owner=data["owner"],
            name=data["name"],
            scopes=data["scopes"],
            expires_at=time.time() + expires_in if expires_in else None,
            cidrs=data["cidrs"],
            rate_limits=data["rate_limits"],
            rotation_period=data.get("rotation_period", rt.settings.key_rotation_period),
            actor=actor(),
        )
        location = {"Location": f"/v1/keys/{key.prefix}"}
        return {**_public(rt, key), "token": token}, 201, location

    @requires("admin", "admin")
    @blp.arguments(KeyListArgsSchema, location="query")
    @blp.response(200, KeyListSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """Every key (or one owner's), newest first. Never a secret."""
        rt = runtime()
        return {"items": [_public(rt, k) for k in rt.keys.list(args.get("owner"))]}


@blp.route("/<prefix>")
class Key(MethodView):
    @requires("admin", "admin")
    @blp.response(200, KeySchema)
    @blp.alt_response(404, description="No such key")
    def get(self, prefix: str) -> Any:
        """One key's record."""
        rt = runtime()
        return _public(rt, rt.keys.get(prefix))

    @requires("admin", "admin")
    @blp.response(200, KeySchema)
    @blp.alt_response(404, description="No such key")
    def delete(self, prefix: str) -> Any:
        """Revoke a key: it stops working at once (the record stays for audit)."""
        rt = runtime()
        return _public(rt, rt.keys.revoke(prefix, actor=actor()))


def _rotated(rt: Runtime, prefix: str, overlap: int | None, by: str) -> dict[str, Any]:
    new, token, old = rt.keys.rotate(
        prefix, rt.settings.key_rotation_overlap if overlap is None else overlap, actor=by
    )
    return {"key": {**_public(rt, new), "token": token}, "previous": _public(rt, old)}


# Registered before /<prefix>/rotate, and a literal segment wins over a variable in
# Werkzeug's routing anyway: "self" is never taken for a prefix.
@blp.route("/self/rotate", methods=["POST"])
@requires_credential("admin")
@blp.arguments(KeyRotateSchema)
@blp.response(201, KeyRotatedSchema)
@blp.alt_response(409, description="Not an API key, or the key is already being rotated")
def rotate_self(data: dict[str, Any]) -> Any:
    """The calling key issues its own successor (no admin needed): the new token is in
    this answer only; the calling key keeps working for `overlap` seconds, then stops."""
    who = principal()
    if who.kind != "key":
        raise Conflict("only an API key can rotate itself (a JWT is renewed by its issuer)")
    return _rotated(runtime(), who.subject, data.get("overlap"), "self"), 201


@blp.route("/<prefix>/rotate", methods=["POST"])
@requires("admin", "admin")
@blp.arguments(KeyRotateSchema)
@blp.response(201, KeyRotatedSchema)
@blp.alt_response(404, description="No such key")
@blp.alt_response(409, description="The key is not active (revoked, expired, rotated)")
def rotate(data: dict[str, Any], prefix: str) -> Any:
    """Issue a successor; the old key keeps working for `overlap` seconds, then stops."""
    return _rotated(runtime(), prefix, data.get("overlap"), actor()), 201


@blp.route("/<prefix>/events")
@requires("admin", "admin")
@blp.arguments(KeyEventListArgsSchema, location="query")
@blp.response(200, KeyEventListSchema)
@blp.alt_response(404, description="No such key")
def events(args: dict[str, Any], prefix: str) -> Any:
    """The key's audit trail, newest first: created, rotated, revoked, first use from a
    new network, expiry notices (who, when; never a secret). Cursor pagination."""
    rt = runtime()
    rt.keys.get(prefix)  # 404 for an unknown key
    items, cursor = rt.keys.audit.list(prefix, limit=args["limit"], cursor=args.get("cursor"))
    return {"items": items, "next_cursor": cursor}
