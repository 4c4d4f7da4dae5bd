"""Acting as a named principal on the command line (`--as NAME` or MESH_PRINCIPAL): the
policy engine judges a command exactly as it judges the API; the operator's database access is
not a role."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from sqlmodel import Session

from catalog import wiring
from catalog.audit.record import Actor
from catalog.kernel.commands import (
    fail,
    load_settings,
    migrated_engine,
    refused,
)
from catalog.kernel.db import transaction
from catalog.kernel.errors import MeshError
from catalog.kernel.settings import Settings
from policies.enforcer import Caller, PolicyEngine
from policies.principals.service import (
    get_principal,
)

As = Annotated[
    str | None,
    typer.Option(
        "--as", envvar="MESH_PRINCIPAL", help="Act as this principal (env MESH_PRINCIPAL)."
    ),
]


OptionalReason = Annotated[str | None, typer.Option("--reason", help="Why; recorded.")]


@contextmanager
def acting(
    home: Path | None, who: str | None
) -> Iterator[tuple[Session, Caller, PolicyEngine, Settings]]:
    """A transaction acting as principal `who`, judged by the policy engine like an API call."""
    if not who:
        raise fail("say who acts: --as PRINCIPAL (or MESH_PRINCIPAL)", code=2)
    settings = load_settings(home)
    engine = migrated_engine(settings)
    wired = wiring.build(settings, engine=engine, refresh_seconds=0)
    caller: Caller | None = None
    try:
        with transaction(engine) as session:
            principal = get_principal(session, who)
            caller = wired.authenticator.caller_for(session, principal)
            yield session, caller, wired.policy, settings
    except MeshError as exc:
        raise refused(engine, caller or Actor(who), exc) from None
    finally:
        engine.dispose()
