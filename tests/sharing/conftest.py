"""The estate every sharing test reads: the demo on SQLite, served by uvicorn on loopback.

The server runs with the shipped settings (no faster policy refresh): the sharing routes read
the governance revision for every request whatever the setting, so the estate exercises the
production path, warm requests on the event loop included.
"""

import pytest

import policies.revision
import sharing.access
import sharing.answers
import sharing.delta
import sharing.routes
from catalog.kernel.settings import Settings
from tests.live import demo_estate, free_port, serving

# Every module of the sharing path that hands work to a handler thread.
THREAD_HOPPING = (sharing.access, sharing.answers, sharing.delta, sharing.routes, policies.revision)


@pytest.fixture(scope="package")
def estate(tmp_path_factory):
    """The demo estate on SQLite: published tiers, a research group with a de-identified grant."""
    home = tmp_path_factory.mktemp("sharing-home")
    port = free_port()
    demo = demo_estate(home, port)
    settings = Settings(home=home, port=port)
    with serving(settings, port):
        yield {
            "env": demo.env,
            "home": home,
            "profile": str(demo.profile_path),
            "port": port,
            "settings": settings,
        }


@pytest.fixture
def thread_hops(monkeypatch) -> list[str]:
    """Names of the functions the sharing path hands to a handler thread while the test runs."""
    hops: list[str] = []
    for module in THREAD_HOPPING:
        original = module.sync_to_thread  # type: ignore[attr-defined]

        async def counting(fn, *args, _original=original, **kwargs):
            hops.append(getattr(fn, "__name__", repr(fn)))
            return await _original(fn, *args, **kwargs)

        monkeypatch.setattr(module, "sync_to_thread", counting)
    return hops
