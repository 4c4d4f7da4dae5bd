"""`mesh principals|tokens|admin|organizations ...`."""

from typing import Annotated

import typer

from catalog.kernel.clock import SystemClock
from catalog.kernel.commands import (
    AsJson,
    Home,
    Reason,
    cli_actor,
    options_as,
    out,
    print_rows,
    unit_of_work,
)
from catalog.kernel.errors import MeshError
from policies.models import PrincipalKind, Role
from policies.principals.models import OrganizationCreate, PrincipalCreate
from policies.principals.service import (
    create_organization,
    create_principal,
    create_token,
    disable_principal,
    get_principal,
    list_principals,
    principal_read,
    revoke_token,
)

principals_app = typer.Typer(help="People and service accounts.", no_args_is_help=True)


tokens_app = typer.Typer(help="API tokens.", no_args_is_help=True)


admin_app = typer.Typer(help="Bootstrap the first platform admin.", no_args_is_help=True)


organizations_app = typer.Typer(help="Consumer organisations.", no_args_is_help=True)


@principals_app.command("create")
def principals_create(
    name: str,
    role: Annotated[list[Role], typer.Option("--role", help="Repeat for several roles.")],
    display_name: Annotated[str | None, typer.Option(help="Default: the name.")] = None,
    domain: Annotated[list[str] | None, typer.Option("--domain", help="Publisher domains.")] = None,
    organization: Annotated[str | None, typer.Option(help="Consumer organisation.")] = None,
    service: Annotated[bool, typer.Option("--service", help="A service account.")] = False,
    home: Home = None,
) -> None:
    """Create a principal with its roles."""
    spec = options_as(
        PrincipalCreate,
        name=name,
        display_name=display_name or name,
        roles=role,
        domains=domain or [],
        organization=organization,
        kind=PrincipalKind.SERVICE if service else PrincipalKind.PERSON,
    )
    with unit_of_work(home) as session:
        created = create_principal(session, spec, actor=cli_actor(), clock=SystemClock())
        read = principal_read(session, created)
    out.print(
        f"principal {read.name}: roles {', '.join(read.roles)}"
        + (f" in {', '.join(read.domains)}" if read.domains else "")
        + (f", organization {read.organization}" if read.organization else "")
    )


@principals_app.command("list")
def principals_list(home: Home = None, as_json: AsJson = False) -> None:
    """Principals and their roles."""
    with unit_of_work(home) as session:
        rows = list_principals(session, actor=cli_actor())
    print_rows(
        rows,
        as_json,
        ("name", "kind", "roles", "domains", "organization", "disabled"),
        lambda r: (
            r.name,
            r.kind,
            ",".join(r.roles),
            ",".join(r.domains),
            r.organization or "",
            "yes" if r.disabled else "",
        ),
    )


@principals_app.command("disable")
def principals_disable(name: str, reason: Reason, home: Home = None) -> None:
    """Disable a principal: its tokens stop working and its roles are removed."""
    with unit_of_work(home) as session:
        disable_principal(session, name, reason=reason, actor=cli_actor(), clock=SystemClock())
    out.print(f"principal {name} disabled")


@tokens_app.command("create")
def tokens_create(
    name: str,
    days: Annotated[int, typer.Option(min=1, max=366)] = 90,
    description: str = "",
    home: Home = None,
) -> None:
    """Issue an API token for a principal; the token is printed once."""
    with unit_of_work(home) as session:
        issued = create_token(
            session,
            name,
            days=days,
            description=description,
            actor=cli_actor(),
            clock=SystemClock(),
        )
    out.print(f"token {issued.id} for {name}, expires {issued.expires_at.isoformat()}")
    out.print(issued.token)


@tokens_app.command("revoke")
def tokens_revoke(token_id: str, home: Home = None) -> None:
    """Revoke a token at once."""
    with unit_of_work(home) as session:
        revoke_token(session, token_id, actor=cli_actor(), clock=SystemClock())
    out.print(f"token {token_id} revoked")


@admin_app.command("bootstrap")
def admin_bootstrap(
    name: Annotated[str, typer.Argument()] = "admin",
    home: Home = None,
) -> None:
    """Create the first platform admin (if missing) and print a new token for it, once."""
    admin = options_as(PrincipalCreate, name=name, display_name=name, roles=[Role.PLATFORM_ADMIN])
    with unit_of_work(home) as session:
        clock, actor = SystemClock(), cli_actor()
        try:
            get_principal(session, name)
        except MeshError:
            create_principal(session, admin, actor=actor, clock=clock)
        issued = create_token(
            session, name, days=90, description="bootstrap", actor=actor, clock=clock
        )
    out.print(f"platform admin {name}; token (shown once, expires {issued.expires_at.date()}):")
    out.print(issued.token)


@organizations_app.command("create")
def organizations_create(name: str, title: str, contact_email: str, home: Home = None) -> None:
    """Register a consumer organisation (a sharing recipient)."""
    spec = options_as(OrganizationCreate, name=name, title=title, contact_email=contact_email)
    with unit_of_work(home) as session:
        create_organization(session, spec, actor=cli_actor(), clock=SystemClock())
    out.print(f"organization {name} registered")
