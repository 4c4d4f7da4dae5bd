"""The estate every sharing test reads: the demo on SQLite, served by uvicorn on loopback."""

import pytest

from catalog.kernel.settings import Settings
from tests.live import demo_estate, free_port, serving


@pytest.fixture(scope="package")
def estate(tmp_path_factory):
    """The demo estate on SQLite: published tiers, a research group with a de-identified grant."""
    home = tmp_path_factory.mktemp("sharing-home")
    port = free_port()
    demo = demo_estate(home, port)
    settings = Settings(home=home, port=port, policy_refresh_seconds=0)
    with serving(settings, port):
        yield {
            "env": demo.env,
            "home": home,
            "profile": str(demo.profile_path),
            "port": port,
            "settings": settings,
        }
