"""`mesh recipients ...`: recipient tokens, profiles, activation links and allow-lists."""

import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from sqlmodel import Session

from catalog.kernel.clock import SystemClock
from catalog.kernel.commands import Home, cli_actor, load_settings, out, unit_of_work
from catalog.kernel.settings import Settings
from policies.principals.service import get_organization
from sharing.files.urls import PREFIX
from sharing.recipients import service as recipients
from sharing.recipients.models import RecipientToken

recipients_app = typer.Typer(help="Delta Sharing recipients.", no_args_is_help=True)
Endpoint = Annotated[
    str | None, typer.Option(help="Public URL of the server (default http://HOST:PORT).")
]
Days = Annotated[int, typer.Option(min=1, max=366, help="Lifetime of the new token.")]


@recipients_app.command("token")
def recipient_token(
    organization: str, days: Days = 90, endpoint: Endpoint = None, home: Home = None
) -> None:
    """Write HOME/profiles/ORG.share: a profile any Delta Sharing client can read with."""
    settings = load_settings(home)
    with unit_of_work(home) as session:
        path, token_id = write_profile(
            session, settings, organization, days=days, endpoint=endpoint
        )
    out.print(f"profile for {organization} (token {token_id}) written to {path}")


@recipients_app.command("rotate")
def recipient_rotate(
    organization: str,
    days: Days = 90,
    grace_hours: Annotated[
        float, typer.Option(min=0, help="How long the older tokens keep working.")
    ] = 24,
    endpoint: Endpoint = None,
    home: Home = None,
) -> None:
    """Issue a new token (profile rewritten); older tokens end after the grace period."""
    settings = load_settings(home)
    with unit_of_work(home) as session:
        org = get_organization(session, organization)
        token, credential = recipients.rotate_token(
            session,
            org,
            days=days,
            grace=timedelta(hours=grace_hours),
            actor=cli_actor(),
            now=SystemClock().now(),
        )
        path = _write(settings, organization, endpoint, token, credential)
    out.print(f"new token {token.id} for {organization}; profile written to {path}")


@recipients_app.command("revoke")
def recipient_revoke(
    organization: str,
    token: Annotated[
        str | None, typer.Option(help="One token id (default: every live one).")
    ] = None,
    home: Home = None,
) -> None:
    """Revoke tokens: the next request with them is refused."""
    with unit_of_work(home) as session:
        org = get_organization(session, organization)
        revoked = recipients.revoke_tokens(
            session, org, token_id=token, actor=cli_actor(), now=SystemClock().now()
        )
    out.print(f"revoked: {', '.join(revoked) or 'nothing (no live tokens)'}")


@recipients_app.command("tokens")
def recipient_tokens(organization: str, home: Home = None) -> None:
    """List a recipient's tokens (ids and dates; secrets are never stored)."""
    with unit_of_work(home) as session:
        org = get_organization(session, organization)
        for t in recipients.list_tokens(session, org):
            state = "revoked" if t.revoked_at else f"expires {t.expires_at.isoformat()}"
            out.print(f"{t.id}  created {t.created_at.isoformat()}  {state}")


@recipients_app.command("activation")
def recipient_activation(
    organization: str,
    days: Days = 90,
    valid_hours: Annotated[float, typer.Option(min=0.1, max=720)] = 72,
    endpoint: Endpoint = None,
    home: Home = None,
) -> None:
    """Print a one-time activation link from which the recipient downloads its profile."""
    settings = load_settings(home)
    with unit_of_work(home) as session:
        org = get_organization(session, organization)
        activation, secret = recipients.create_activation(
            session,
            org,
            token_days=days,
            valid_for=timedelta(hours=valid_hours),
            actor=cli_actor(),
            now=SystemClock().now(),
        )
    base = recipients.settings_profile_endpoint(settings, endpoint).rstrip("/")
    out.print(f"activation link (one download, until {activation.expires_at.isoformat()}):")
    out.print(f"{base}{PREFIX}/activation/{secret}", soft_wrap=True)


@recipients_app.command("networks")
def recipient_networks(
    organization: str,
    cidr: Annotated[
        list[str] | None, typer.Option(help="Allowed range (repeat); none given: show them.")
    ] = None,
    clear: Annotated[bool, typer.Option(help="Allow any address again.")] = False,
    home: Home = None,
) -> None:
    """Show or set the CIDR ranges a recipient may call from."""
    with unit_of_work(home) as session:
        org = get_organization(session, organization)
        if cidr or clear:
            current = recipients.set_networks(
                session, org, list(cidr or []), actor=cli_actor(), now=SystemClock().now()
            )
        else:
            current = recipients.networks(session, org)
    out.print(", ".join(current) if current else "any address")


def write_profile(
    session: Session, settings: Settings, organization: str, *, days: int, endpoint: str | None
) -> tuple[Path, str]:
    """Issue a recipient token and write HOME/profiles/ORG.share (owner-readable only)."""
    org = get_organization(session, organization)
    token, secret = recipients.issue_recipient_token(
        session, org, days=days, now=SystemClock().now()
    )
    return _write(settings, organization, endpoint, token, secret), token.id


def _write(
    settings: Settings,
    organization: str,
    endpoint: str | None,
    token: RecipientToken,
    credential: str,
) -> Path:
    """HOME/profiles/ORG.share for `credential`, owner-readable only."""
    base = recipients.settings_profile_endpoint(settings, endpoint)
    profile = recipients.profile(base, token, credential)
    settings.profiles_dir.mkdir(parents=True, exist_ok=True)
    path = settings.profiles_dir / f"{organization}.share"
    path.write_text(json.dumps(profile, indent=2) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path
