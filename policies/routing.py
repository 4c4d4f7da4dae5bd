"""What the governance controllers share: the catch-all permission, parameter types, page
size and the documented error responses of each kind of route."""

from typing import Annotated

from litestar.params import PathParameter, QueryParameter

from catalog.kernel import pagination
from catalog.kernel.errors import InvalidParameter
from catalog.kernel.problems import problem_responses
from catalog.kernel.settings import Settings
from policies.models import MAX_ROW_ID, Decision

ANY = {"permission": "authenticated"}  # fine-grained checks happen in the service


Limit = Annotated[int | None, QueryParameter(ge=1)]


Cursor = Annotated[str | None, QueryParameter(max_length=200)]


RowId = Annotated[int, PathParameter(ge=1, le=MAX_ROW_ID)]


# The errors each kind of route answers, documented as problem+json (429: too many
# failed authentications from the caller's address or token).
LIST_ERRORS = problem_responses(401, 403, 429)


SEARCH_ERRORS = problem_responses(400, 401, 403, 404, 422, 429)  # 404: unknown filter value


READ_ERRORS = problem_responses(400, 401, 403, 404, 422, 429)


ACTION_ERRORS = problem_responses(400, 401, 403, 404, 409, 422, 429)


WRITE_ERRORS = problem_responses(400, 401, 403, 404, 409, 413, 422, 429)


def page_size(settings: Settings, limit: int | None) -> int:
    """The requested page size within the configured bounds."""
    return pagination.page_size(
        limit, default=settings.default_page_size, maximum=settings.max_page_size
    )


def required_reason(decision: Decision) -> str:
    """The reason of a decision that must give one (deny, revoke, disable)."""
    if not (decision.reason and decision.reason.strip()):
        raise InvalidParameter("a reason is required")
    return decision.reason
