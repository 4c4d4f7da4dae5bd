"""Fixtures the security probes share: the suites' own estates (imported, so pytest sees them),
and a small demo estate of this package's own (SQLite), so these tests may change recipients."""

import pytest

from catalog.kernel.db import make_engine
from catalog.kernel.settings import Settings
from tests.catalog.publishing.conftest import export_dir, patients_version
from tests.live import demo_estate, free_port, serving
from tests.policies.conftest import Estate, estate

__all__ = ["Estate", "estate", "export_dir", "own_estate", "patients_version"]


@pytest.fixture(scope="module")
def own_estate(tmp_path_factory):  # type: ignore[no-untyped-def]
    """The demo on SQLite served on loopback: sepsis-research holds de-identified grants."""
    home = tmp_path_factory.mktemp("security-home")
    port = free_port()
    demo = demo_estate(home, port)
    settings = Settings(home=home, port=port)
    engine = make_engine(settings.resolved_database_url)
    with serving(settings, port, engine=engine):
        yield {
            "env": demo.env,
            "home": home,
            "base": demo.base,
            "profile": str(demo.profile_path),
            "token": demo.token,
            "settings": settings,
            "engine": engine,
        }
    engine.dispose()
