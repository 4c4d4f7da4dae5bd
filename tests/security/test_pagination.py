"""Page sizes on every list endpoint: 0 and negatives refused, huge values capped, and a client
following `nextPageToken` always ends (a token never points back where its page began)."""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from catalog.kernel.errors import InvalidParameter
from catalog.kernel.pagination import page_size
from sharing.params import MAX_PAGE
from tests.problems import assert_protocol_error
from tests.security.served_demo import Demo, served_demo

pytestmark = pytest.mark.slow  # builds a demo estate, a subprocess or a browser

SHARE = "/delta-sharing/shares/sepsis-research"
LISTS = ["/delta-sharing/shares", SHARE + "/schemas", SHARE + "/schemas/st-marys/tables",
         SHARE + "/all-tables"]  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with served_demo(tmp_path_factory.mktemp("pages-demo")) as served:
        yield served


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("size", ["0", "-1", "-" + "9" * 30, "x", "9" * 5000])
def test_page_sizes_that_cannot_advance_are_refused(demo: Demo, path: str, size: str) -> None:
    with httpx.Client(timeout=60) as client:
        answer = client.get(demo.base + path, params={"maxResults": size}, headers=demo.recipient)
    assert_protocol_error(answer, 400)
    error = answer.json()
    assert set(error) == {"errorCode", "message"}
    assert error["errorCode"] == "INVALID_PARAMETER_VALUE"
    assert "maxResults" in error["message"]
    assert len(error["message"]) < 200  # the parameter named, its value not echoed back


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("size", [1, 2, 10**30])
def test_following_tokens_ends_and_sees_every_item_once(demo: Demo, path: str, size: int) -> None:
    with httpx.Client(timeout=60) as client:
        everything = client.get(demo.base + path, headers=demo.recipient).json()["items"]
        seen: list[Any] = []
        token = None
        for _ in range(len(everything) + 1):
            params: dict[str, Any] = {"maxResults": size}
            if token:
                params["pageToken"] = token
            page = client.get(demo.base + path, params=params, headers=demo.recipient)
            assert page.status_code == 200, page.text
            seen += page.json()["items"]
            assert len(page.json()["items"]) <= min(size, MAX_PAGE)
            token = page.json().get("nextPageToken")
            if not token:
                break
        assert token is None, "the pages did not end"
        assert seen == everything


@pytest.mark.parametrize("limit", [0, -1, None])
def test_page_size_refuses_what_cannot_advance(limit: int | None) -> None:
    if limit is None:
        assert page_size(None, default=50, maximum=500) == 50
    else:
        with pytest.raises(InvalidParameter):
            page_size(limit, default=50, maximum=500)


API_LISTS = ["/api/v1/products", "/api/v1/audit", "/api/v1/access-requests", "/api/v1/grants",
             "/api/v1/duas", "/api/v1/products/x/y/quarantine"]  # fmt: skip


@pytest.mark.parametrize("limit", ["0", "-1", "9" * 5000, "501"])
def test_api_list_limits_are_bounded(client: TestClient[Any], limit: str) -> None:
    for path in API_LISTS:
        answer = client.get(path, params={"limit": limit})
        assert answer.status_code in (400, 422), (path, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        problem = answer.json()
        assert problem["status"] == answer.status_code
        assert problem["errorCode"] == "INVALID_PARAMETER_VALUE"
        assert "limit" in problem["detail"]
