"""What the API's controllers share: the `page` dependency of a listing, and the decorator of
an action (a POST that changes a resource in place and answers it)."""

from typing import Annotated, Any

from litestar import post
from litestar.di import NamedDependency, Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import QueryParameter

from catalog.kernel.pagination import PageRequest, page_size
from catalog.kernel.problems import WRITE_ERRORS
from catalog.kernel.settings import Settings


def page_request(cursor_length: int = 200) -> Provide:
    """The `page` dependency of a listing: its `limit` and `cursor` query parameters, the limit
    bounded by the settings (400 outside them), the cursor by `cursor_length` characters."""

    def provide_page(
        settings: NamedDependency[Settings],
        limit: Annotated[int | None, QueryParameter(ge=1)] = None,
        cursor: Annotated[str | None, QueryParameter(max_length=cursor_length)] = None,
    ) -> PageRequest:
        size = page_size(limit, default=settings.default_page_size, maximum=settings.max_page_size)
        return PageRequest(size, cursor)

    return Provide(provide_page, sync_to_thread=False)


def action(
    path: str, *, opt: dict[str, Any], responses: dict[int, ResponseSpec] = WRITE_ERRORS
) -> post:
    """A POST that changes the resource at `path` and answers it: 200, not a creation's 201,
    run in a thread with the request's unit of work."""
    return post(path, sync_to_thread=True, status_code=200, opt=opt, responses=responses)
