"""A demo estate on SQLite served on loopback, with an admin token, for the hostile-input probes.

`served_demo(home)` builds the demo with the real CLI, serves it with `tests.live.serving` and
yields what a probe needs: base URL, the recipient's profile, admin headers and settings.
"""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from catalog.kernel.settings import Settings
from tests.live import demo_estate, free_port, serving

ADMIN_TOKEN = "security-probe-admin-token-0123456789abcdef"
TABLE = "/delta-sharing/shares/sepsis-research/schemas/st-marys/tables/patients"


@dataclass(frozen=True)
class Demo:
    """A served demo: where it is and the credentials a probe holds."""

    base: str
    home: Path
    settings: Settings
    profile: dict[str, Any]

    @property
    def recipient(self) -> dict[str, str]:
        """Headers of the demo recipient (sepsis-research)."""
        return {"Authorization": f"Bearer {self.profile['bearerToken']}"}

    @property
    def admin(self) -> dict[str, str]:
        """Headers of the bootstrap platform admin."""
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def file_url(self, client: httpx.Client) -> str:
        """A signed URL of one data file of the shared patients table."""
        answer = client.post(self.base + TABLE + "/query", json={}, headers=self.recipient)
        assert answer.status_code == 200, answer.text
        files = [json.loads(line) for line in answer.text.splitlines()[2:]]
        return str(files[0]["file"]["url"])


def build_demo(home: Path, port: int) -> dict[str, Any]:
    """The demo estate in `home` and the profile of its research recipient."""
    return demo_estate(home, port).profile


def demo_settings(home: Path, port: int) -> Settings:
    """The settings the demo is served with (its SQLite catalog, an admin token)."""
    return Settings(home=home, port=port, admin_token=ADMIN_TOKEN)


@contextmanager
def served_demo(home: Path) -> Iterator[Demo]:
    """Build the demo in `home` and serve it on a free loopback port while the block runs."""
    port = free_port()
    profile = build_demo(home, port)
    settings = demo_settings(home, port)
    with serving(settings, port):
        yield Demo(f"http://127.0.0.1:{port}", home, settings, profile)
