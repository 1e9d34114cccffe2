"""The one place for errors: every failure the API reports is a :class:`ProblemError`.

The ingress turns them into RFC 9457 ``application/problem+json`` bodies. Code anywhere in the
service (storage, registry, image decoding, family deployments) raises these instead of returning
status codes, so one handler decides what the client sees.
"""

from __future__ import annotations

from typing import Any

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://collage.dev/problems/"


class ProblemError(Exception):
    """An error with an HTTP status and a message that tells the client what to fix."""

    status: int = 500
    title: str = "Internal Server Error"
    slug: str = "internal"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra

    @property
    def type_uri(self) -> str:
        return PROBLEM_TYPE_BASE + self.slug

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type_uri, "title": self.title, "status": self.status, "detail": self.detail}
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body

    def __reduce__(self):
        # Ray pickles exceptions raised in replicas; keep detail, headers and extra across the hop.
        return (_rebuild_problem, (type(self), self.detail, self.headers, self.extra))


def _rebuild_problem(cls, detail, headers, extra):
    return cls(detail, headers=headers, **extra)


class BadRequest(ProblemError):
    status, title, slug = 400, "Bad Request", "bad-request"


class Unauthorized(ProblemError):
    """No bearer token, or one that no configured API key has."""

    status, title, slug = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str, **extra: Any) -> None:
        headers = extra.pop("headers", None) or {}
        headers.setdefault("WWW-Authenticate", 'Bearer realm="collage"')
        super().__init__(detail, headers=headers, **extra)


class Forbidden(ProblemError):
    """A valid key without the scope the route needs."""

    status, title, slug = 403, "Forbidden", "forbidden"

    def __init__(self, detail: str, **extra: Any) -> None:
        headers = extra.pop("headers", None) or {}
        headers.setdefault("WWW-Authenticate", 'Bearer realm="collage", error="insufficient_scope"')
        super().__init__(detail, headers=headers, **extra)


class NotFound(ProblemError):
    status, title, slug = 404, "Not Found", "not-found"


class Conflict(ProblemError):
    status, title, slug = 409, "Conflict", "conflict"


class PayloadTooLarge(ProblemError):
    status, title, slug = 413, "Content Too Large", "too-large"


class UnsupportedMediaType(ProblemError):
    status, title, slug = 415, "Unsupported Media Type", "unsupported-media-type"


class Unprocessable(ProblemError):
    """Well-formed request whose content cannot be used (schema errors, bad images, bad shapes)."""

    status, title, slug = 422, "Unprocessable Content", "unprocessable"


class TooManyRequests(ProblemError):
    status, title, slug = 429, "Too Many Requests", "too-many-requests"


class DeadlineExceeded(ProblemError):
    """The client's X-Request-Timeout passed before the edit could run; it was not computed."""

    status, title, slug = 504, "Deadline Exceeded", "deadline-exceeded"


class ServiceUnavailable(ProblemError):
    status, title, slug = 503, "Service Unavailable", "unavailable"

    def __init__(self, detail: str, *, retry_after_s: int = 5, **extra: Any) -> None:
        headers = extra.pop("headers", None) or {}
        headers.setdefault("Retry-After", str(retry_after_s))
        super().__init__(detail, headers=headers, **extra)


class ModelBroken(Unprocessable):
    """A registered model whose weights do not load. Retrying cannot help (so not a 503) until an
    operator registers working weights; GET /v1/models marks the model ``broken`` meanwhile."""

    title, slug = "Model Cannot Be Loaded", "model-broken"


class StorageUnavailable(ServiceUnavailable):
    slug = "storage-unavailable"


class StorageError(ProblemError):
    """An object-storage request failed for a reason that is neither "missing" nor "unreachable"."""

    status, title, slug = 500, "Storage Error", "storage-error"


# What an IntegrityError is about -> its problem (title, slug); the slugs are documented in docs/api.md.
_INTEGRITY_SUBJECTS = {
    "object": ("Stored Object Failed Integrity Check", "integrity"),
    "checkpoint": ("Checkpoint Integrity Failure", "checkpoint-integrity"),
}


class IntegrityError(ProblemError):
    """Bytes that do not match the SHA-256 recorded for them: nothing the client can fix.

    ``subject="object"`` (the default): a stored object failed its recorded checksum, on read or in
    transit (``service/storage.py``), problem type ``integrity``. ``subject="checkpoint"``: a model's
    weights or catalog do not match the sha256 of its manifest (``service/registry.py``), problem type
    ``checkpoint-integrity``.
    """

    status = 500

    def __init__(self, detail: str, *, subject: str = "object", **extra: Any) -> None:
        if subject not in _INTEGRITY_SUBJECTS:
            raise ValueError(f"IntegrityError subject must be one of {sorted(_INTEGRITY_SUBJECTS)}, got {subject!r}")
        self.subject = subject
        self.title, self.slug = _INTEGRITY_SUBJECTS[subject]
        super().__init__(detail, **extra)

    def __reduce__(self):
        return (_rebuild_integrity, (self.detail, self.subject, self.headers, self.extra))


def _rebuild_integrity(detail, subject, headers, extra):
    return IntegrityError(detail, subject=subject, headers=headers, **extra)
