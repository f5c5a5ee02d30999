"""/v1/keys (admin scope): create, list, show, rotate, revoke API keys."""

from __future__ import annotations

import time
from typing import Any

from flask.views import MethodView

from api.identity import requires
from api.requests import Blueprint
from app.runtime import runtime
from schemas.keys import (
    KeyCreatedSchema,
    KeyCreateSchema,
    KeyListArgsSchema,
    KeyListSchema,
    KeyRotatedSchema,
    KeyRotateSchema,
    KeySchema,
)

__all__ = ["blp"]

blp = Blueprint("keys", __name__, url_prefix="/v1/keys", description="API keys (admin)")


@blp.route("")
class Keys(MethodView):
    @requires("admin", "admin")
    @blp.arguments(KeyCreateSchema)
    @blp.response(201, KeyCreatedSchema, description="The token is in this answer only")
    def post(self, data: dict[str, Any]) -> Any:
        """Create a key for an owner; the token is shown once."""
        expires_in = data.get("expires_in")
        key, token = runtime().keys.create(
            owner=data["owner"],
            name=data["name"],
            scopes=data["scopes"],
            expires_at=time.time() + expires_in if expires_in else None,
            cidrs=data["cidrs"],
            rate_limits=data["rate_limits"],
        )
        return {**key.public(), "token": token}, 201, {"Location": f"/v1/keys/{key.prefix}"}

    @requires("admin", "admin")
    @blp.arguments(KeyListArgsSchema, location="query")
    @blp.response(200, KeyListSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """Every key (or one owner's), newest first. Never a secret."""
        return {"items": [k.public() for k in runtime().keys.list(args.get("owner"))]}


@blp.route("/<prefix>")
class Key(MethodView):
    @requires("admin", "admin")
    @blp.response(200, KeySchema)
    @blp.alt_response(404, description="No such key")
    def get(self, prefix: str) -> Any:
        """One key's record."""
        return runtime().keys.get(prefix).public()

    @requires("admin", "admin")
    @blp.response(200, KeySchema)
    @blp.alt_response(404, description="No such key")
    def delete(self, prefix: str) -> Any:
        """Revoke a key: it stops working at once (the record stays for audit)."""
        return runtime().keys.revoke(prefix).public()


@blp.route("/<prefix>/rotate", methods=["POST"])
@requires("admin", "admin")
@blp.arguments(KeyRotateSchema)
@blp.response(201, KeyRotatedSchema)
@blp.alt_response(404, description="No such key")
@blp.alt_response(409, description="The key is not active (revoked, expired, rotated)")
def rotate(data: dict[str, Any], prefix: str) -> Any:
    """Issue a successor; the old key keeps working for `overlap` seconds, then stops."""
    rt = runtime()
    overlap = data.get("overlap", rt.settings.key_rotation_overlap)
    new, token, old = rt.keys.rotate(prefix, overlap)
    return {"key": {**new.public(), "token": token}, "previous": old.public()}
