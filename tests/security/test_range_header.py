"""Range headers of any length on the signed file endpoint: 206, 416 or the whole file, never 500.

Python's `int()` refuses more than 4,300 digits; a Range header may be as long as the server's
header limit allows, so a position's length must not decide the status.
"""

from collections.abc import Iterator

import httpx
import pytest

from sharing.files.urls import RangeNotSatisfiable, byte_range
from tests.problems import assert_protocol_error
from tests.security.served_demo import Demo, served_demo

pytestmark = pytest.mark.slow  # builds a demo estate, a subprocess or a browser

HUGE = "9" * 5000  # past Python's int max-str-digits (4,300)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with served_demo(tmp_path_factory.mktemp("range-demo")) as served:
        yield served


def test_positions_longer_than_int_max_str_digits_are_positions(demo: Demo) -> None:
    with httpx.Client(timeout=60) as client:
        url = demo.file_url(client)
        size = int(client.head(url).headers["content-length"])

        past_the_end = client.get(url, headers={"Range": f"bytes={HUGE}-"})
        assert past_the_end.status_code == 416
        assert past_the_end.headers["content-range"] == f"bytes */{size}"
        assert past_the_end.json()["errorCode"] == "INVALID_PARAMETER_VALUE"

        both_past = client.get(url, headers={"Range": f"bytes={HUGE}-{HUGE}"})
        assert_protocol_error(both_past, 416)

        to_the_end = client.get(url, headers={"Range": f"bytes=0-{HUGE}"})
        assert to_the_end.status_code == 206
        assert to_the_end.headers["content-range"] == f"bytes 0-{size - 1}/{size}"
        assert len(to_the_end.content) == size

        whole_suffix = client.get(url, headers={"Range": f"bytes=-{HUGE}"})
        assert whole_suffix.status_code == 206
        assert len(whole_suffix.content) == size

        leading_zeros = client.get(url, headers={"Range": "bytes=" + "0" * 5000 + "1-2"})
        assert leading_zeros.status_code == 206
        assert leading_zeros.headers["content-range"] == f"bytes 1-2/{size}"

        backwards = client.get(url, headers={"Range": f"bytes={HUGE}-1"})
        assert backwards.status_code == 200  # last before first: ignored, whole file
        assert len(backwards.content) == size


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"bytes=0-{HUGE}", (0, 99)),
        (f"bytes=-{HUGE}", (0, 99)),
        (f"bytes=5-{'0' * 5000}7", (5, 7)),
        (f"bytes={HUGE}-3", None),
        ("bytes=" + "0" * 4400 + "-", (0, 99)),
        ("bytes=18446744073709551616-", RangeNotSatisfiable),  # 2**64
        (f"bytes={HUGE}-", RangeNotSatisfiable),
        (f"bytes=-{'0' * 5000}", RangeNotSatisfiable),
    ],
)
def test_byte_range_reads_positions_of_any_length(
    header: str, expected: tuple[int, int] | type[Exception] | None
) -> None:
    if expected is RangeNotSatisfiable:
        with pytest.raises(RangeNotSatisfiable):
            byte_range(header, 100)
    else:
        assert byte_range(header, 100) == expected
