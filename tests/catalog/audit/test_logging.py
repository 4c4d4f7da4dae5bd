"""Every log line carries the request id; access lines never carry query strings."""

import io
import json
import logging

from catalog.audit.context import (
    REQUEST_ID_HEADER,
    JsonLineFormatter,
    RequestContext,
    RequestIdFilter,
    request_scope,
)


def capture(logger_name: str) -> tuple[io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonLineFormatter())
    logging.getLogger(logger_name).addHandler(handler)
    return stream, handler


def test_json_lines_carry_the_request_id():
    stream, handler = capture("mesh.test")
    log = logging.getLogger("mesh.test")
    log.setLevel(logging.INFO)
    try:
        with request_scope(RequestContext("req-7")):
            log.info("published %s", "labs/cbc", extra={"rows": 3})
        log.info("outside")
    finally:
        log.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["request_id"] == "req-7"
    assert (inside["message"], inside["rows"], inside["level"]) == ("published labs/cbc", 3, "info")
    assert inside["time"].endswith("+00:00")
    assert outside["request_id"] == "-"


def test_access_lines_have_the_request_id_and_no_query_string(client):
    stream, handler = capture("mesh.access")
    logging.getLogger("mesh.access").setLevel(logging.INFO)
    try:
        response = client.get(
            "/delta-sharing/files/x.parquet",
            params={"X-Amz-Expires": "1", "X-Amz-Signature": "deadbeef"},
            headers={REQUEST_ID_HEADER: "dl-1"},
        )
    finally:
        logging.getLogger("mesh.access").removeHandler(handler)
    [line] = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert line["request_id"] == "dl-1"
    assert line["message"] == f"GET /delta-sharing/files/x.parquet {response.status_code}"
    assert line["status"] == response.status_code
    assert "deadbeef" not in stream.getvalue()
