"""What the governance controllers share: the catch-all permission, parameter types, page size
and the reason a decision must give."""

from typing import Annotated

from litestar.params import PathParameter, QueryParameter

from catalog.kernel import pagination
from catalog.kernel.errors import InvalidParameter
from catalog.kernel.settings import Settings
from policies.models import MAX_ROW_ID, Decision

ANY = {"permission": "authenticated"}  # fine-grained checks happen in the service


Limit = Annotated[int | None, QueryParameter(ge=1)]


Cursor = Annotated[str | None, QueryParameter(max_length=200)]


RowId = Annotated[int, PathParameter(ge=1, le=MAX_ROW_ID)]


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
