"""API-facing errors. The single handler in `api.errors` renders them as problem+json.

Exception tree::

    CollectqError
    ├── NotFound              404  not_found
    ├── Conflict              409  conflict
    ├── ValidationFailed      422  validation_error   (errors: field → messages)
    └── DependencyUnavailable 503  dependency_unavailable (Retry-After)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CollectqError",
    "Conflict",
    "DependencyUnavailable",
    "NotFound",
    "ValidationFailed",
]


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
