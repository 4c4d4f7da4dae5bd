"""A worker's first reader pays nothing that startup could pay instead.

Measured on the bench's 1M-row table: the first metadata call of a fresh worker took 556 ms, of
which ~330 ms was pyarrow importing pandas (to ask whether deltalake's actions were a pandas
frame) and ~150 ms the ORM configuring its mappers. Each check runs in a fresh interpreter,
because this one has long imported pandas and configured every mapper.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds a demo estate, a subprocess or a browser

SERVE_AND_READ = """
import json, sys
from urllib.parse import urlsplit
from litestar.testing import TestClient
from sqlmodel import SQLModel
from catalog.app import create_app, tune_for_serving
from catalog.kernel.settings import Settings

app = create_app(Settings(home=sys.argv[1]))
tune_for_serving()
unconfigured = [m.class_.__name__ for m in SQLModel._sa_registry.mappers if not m.configured]
table = "/delta-sharing/shares/sepsis-research/schemas/st-marys/tables/patients"
statuses = []
with TestClient(app) as client:
    client.headers["Authorization"] = "Bearer " + sys.argv[2]
    for method, path in [
        ("GET", table + "/metadata"),
        ("GET", table + "/version"),
        ("GET", table + "/changes?startingVersion=0"),
    ]:
        statuses.append(client.request(method, path).status_code)
    query = client.post(table + "/query", json={})
    statuses.append(query.status_code)
    url = next(json.loads(line)["file"]["url"] for line in query.text.splitlines() if '"file"' in line)
    parts = urlsplit(url)
    statuses.append(client.get(parts.path + "?" + parts.query, headers={"Range": "bytes=0-7"}).status_code)
print(json.dumps({"pandas": "pandas" in sys.modules, "unconfigured": unconfigured, "statuses": statuses}))
"""


def test_serving_a_read_never_imports_pandas_and_mappers_are_configured_at_startup(estate):
    token = json.loads(Path(estate["profile"]).read_text())["bearerToken"]
    done = subprocess.run(
        [sys.executable, "-c", SERVE_AND_READ, str(estate["home"]), token],
        env={**estate["env"], "PATH": "", "PYTHONPATH": str(Path(__file__).parents[2])},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found == {"pandas": False, "unconfigured": [], "statuses": [200, 200, 200, 200, 206]}
