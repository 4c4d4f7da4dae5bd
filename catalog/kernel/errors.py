"""One error hierarchy for the whole service, rendered as RFC 9457 problem details.

Services raise `MeshError` subclasses; the API renders them as `application/problem+json`
(the Delta Sharing endpoints reuse `code` as the protocol's `errorCode`), and the CLI prints
their `detail`. Only `MeshError` text ever reaches a client.
"""

from dataclasses import dataclass
from typing import Any, ClassVar

PROBLEM_TYPE_BASE = "https://fhir-mesh.dev/problems/"


@dataclass(frozen=True)
class FieldError:
    """One invalid input field: a dotted path (`schema[2].type`) and what was wrong."""

    path: str
    message: str
    line: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON shape used in problem details `errors`."""
        out: dict[str, Any] = {"path": self.path, "message": self.message}
        if self.line is not None:
            out["line"] = self.line
        return out


class MeshError(Exception):
    """Base of every error a client may see."""

    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"
    status: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL_ERROR"

    def __init__(self, detail: str, *, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        self.headers: dict[str, str] = {}  # HTTP headers the answer must carry (Retry-After)
        # Refusals (Forbidden) are audited once, where the request or command ends
        # (`catalog.kernel.problems.record_refusal`, the CLI's units of work): facts for
        # the entry, and whether it was written.
        self.audit_details: dict[str, Any] = {}
        self.audited = False

    @property
    def type_uri(self) -> str:
        """Stable problem `type` URI."""
        return PROBLEM_TYPE_BASE + self.slug

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        """The RFC 9457 body, plus the Delta Sharing `errorCode`/`message` members."""
        body: dict[str, Any] = {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "errorCode": self.code,
            "message": self.detail,
        }
        if instance:
            body["instance"] = instance
        if self.errors:
            body["errors"] = [e.as_dict() for e in self.errors]
        return body


class InvalidParameter(MeshError):
    """A request parameter is malformed (bad cursor, bad filter value)."""

    slug, title, status, code = (
        "invalid-parameter",
        "Invalid parameter",
        400,
        "INVALID_PARAMETER_VALUE",
    )


class ValidationFailed(MeshError):
    """The request body or a products file does not match the expected shape."""

    slug, title, status, code = (
        "validation-error",
        "Validation failed",
        422,
        "INVALID_PARAMETER_VALUE",
    )


class InvalidVersion(MeshError, ValueError):
    """A version string is not semantic versioning `MAJOR.MINOR.PATCH`.

    Also a ValueError, so pydantic reports it as a field error with its path.
    """

    slug, title, status, code = "invalid-version", "Invalid version", 422, "INVALID_PARAMETER_VALUE"


class BreakingChange(MeshError):
    """A new version changes the schema more than its version bump allows."""

    slug, title, status, code = "breaking-change", "Breaking change", 422, "INVALID_PARAMETER_VALUE"


class NotFound(MeshError):
    """The named resource does not exist (or the caller may not know it exists)."""

    slug, title, status, code = "not-found", "Not found", 404, "RESOURCE_DOES_NOT_EXIST"


class Conflict(MeshError):
    """The resource already exists, or its current state forbids the change."""

    slug, title, status, code = "conflict", "Conflict", 409, "ALREADY_EXISTS"


class Busy(Conflict):
    """A lock the change needs stayed taken past the lock timeout (`MESH_DB_LOCK_TIMEOUT_SECONDS`).

    Nothing was changed; the same request may succeed once the other change is done, so the
    answer carries Retry-After.
    """

    slug, title, status, code = "busy", "Resource busy", 409, "ABORTED"

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.headers["Retry-After"] = str(retry_after)


class Unauthenticated(MeshError):
    """No valid credentials were presented."""

    slug, title, status, code = "unauthenticated", "Unauthenticated", 401, "UNAUTHENTICATED"


class Forbidden(MeshError):
    """The principal is known but lacks the permission, or a rule refuses the action.

    Wherever it is raised, the refusal is recorded once as `access.denied` with its detail as
    the reason (the API's exception hook, the CLI's unit of work), in a transaction of its own.
    """

    slug, title, status, code = "forbidden", "Forbidden", 403, "PERMISSION_DENIED"


class Unavailable(MeshError):
    """A dependency (database, storage) is not reachable right now."""

    slug, title, status, code = "unavailable", "Service unavailable", 503, "TEMPORARILY_UNAVAILABLE"

    def __init__(
        self, detail: str, *, errors: list[FieldError] | None = None, retry_after: int = 5
    ) -> None:
        super().__init__(detail, errors=errors)
        self.headers["Retry-After"] = str(retry_after)


class TooManyRequests(MeshError):
    """Too many failed authentication attempts from this address or for this token."""

    slug, title, status, code = "too-many-requests", "Too many requests", 429, "RESOURCE_EXHAUSTED"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
        self.headers["Retry-After"] = str(retry_after)
