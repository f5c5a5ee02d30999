"""API-facing errors. The single handler in `api.errors` renders them as problem+json.

Exception tree::

    CollectqError
    ├── Unauthorized          401  unauthorized       (WWW-Authenticate: Bearer, RFC 6750)
    ├── Forbidden             403  insufficient_scope (WWW-Authenticate names the scope)
    ├── NotFound              404  not_found
    ├── Conflict              409  conflict
    ├── ValidationFailed      422  validation_error   (errors: field → messages)
    ├── QuotaExceeded         429  quota_exceeded     (Retry-After)
    └── DependencyUnavailable 503  dependency_unavailable (Retry-After)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "REALM",
    "CollectqError",
    "Conflict",
    "DependencyUnavailable",
    "Forbidden",
    "NotFound",
    "QuotaExceeded",
    "Unauthorized",
    "ValidationFailed",
]

REALM = "collectq"


class CollectqError(Exception):
    status: int = 500
    title: str = "Internal Server Error"
    type: str = "internal_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def extra(self) -> dict[str, Any]:
        return {}

    def headers(self) -> dict[str, str]:
        return {}


class Unauthorized(CollectqError):
    """No credentials (`error` None) or credentials that do not authenticate."""

    status, title, type = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str, error: str | None = "invalid_token") -> None:
        super().__init__(detail)
        self.error = error

    def headers(self) -> dict[str, str]:
        challenge = f'Bearer realm="{REALM}"'
        if self.error:
            challenge += f', error="{self.error}", error_description="{self.detail}"'
        return {"WWW-Authenticate": challenge}


class Forbidden(CollectqError):
    status, title, type = 403, "Forbidden", "insufficient_scope"

    def __init__(self, scope: str) -> None:
        super().__init__(f"this credential lacks the {scope!r} scope")
        self.scope = scope

    def extra(self) -> dict[str, Any]:
        return {"required_scope": self.scope}

    def headers(self) -> dict[str, str]:
        return {
            "WWW-Authenticate": (
                f'Bearer realm="{REALM}", error="insufficient_scope", scope="{self.scope}"'
            )
        }


class QuotaExceeded(CollectqError):
    status, title, type = 429, "Too Many Requests", "quota_exceeded"

    def __init__(self, detail: str, limit: int, retry_after: int = 10) -> None:
        super().__init__(detail)
        self.limit = limit
        self.retry_after = retry_after

    def extra(self) -> dict[str, Any]:
        return {"limit": self.limit}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class NotFound(CollectqError):
    status, title, type = 404, "Not Found", "not_found"


class Conflict(CollectqError):
    status, title, type = 409, "Conflict", "conflict"


class ValidationFailed(CollectqError):
    status, title, type = 422, "Unprocessable Content", "validation_error"

    def __init__(
        self, errors: dict[str, Any], detail: str = "the request has invalid fields"
    ) -> None:
        super().__init__(detail)
        self.errors = errors

    def extra(self) -> dict[str, Any]:
        return {"errors": self.errors}


class DependencyUnavailable(CollectqError):
    status, title, type = 503, "Service Unavailable", "dependency_unavailable"

    def __init__(self, dependency: str, detail: str | None = None, retry_after: int = 5) -> None:
        super().__init__(detail or f"{dependency} is unreachable; try again shortly")
        self.dependency = dependency
        self.retry_after = retry_after

    def extra(self) -> dict[str, Any]:
        return {"dependency": self.dependency}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}
