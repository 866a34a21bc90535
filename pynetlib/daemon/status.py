"""Error categories (``pynetlib.errors``) to HTTP statuses, as docs/http-api.md sets."""

from __future__ import annotations

from pynetlib import errors

# Checked in order: the first category an exception belongs to decides.
_CATEGORIES: tuple[tuple[type[BaseException], int, str], ...] = (
    (errors.BadRequestError, 400, "BadRequest"),
    (errors.ForbiddenError, 403, "Forbidden"),
    (errors.NotFoundError, 404, "NotFound"),
    (errors.TimeoutError, 408, "Timeout"),
    (errors.NotImplementedByDriverError, 501, "NotImplemented"),
    (errors.NoServiceError, 503, "NoService"),
)


def status_of(exc: BaseException) -> tuple[int, str]:
    """(HTTP status, category text) for an exception a handler raised."""
    for cls, status, category in _CATEGORIES:
        if isinstance(exc, cls):
            return status, category
    return 500, "Internal"


def error_body(message: str, category: str) -> dict:
    return {"message": message, "category": category}
