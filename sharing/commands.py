"""`mesh recipients token ORG`: issue a recipient bearer token and write its profile file."""

import json
from pathlib import Path
from typing import Annotated

import typer
from sqlmodel import Session

from catalog.clock import SystemClock
from catalog.commands import Home, load_settings, out, unit_of_work
from catalog.settings import Settings
from policies.principals import get_organization
from sharing.service import issue_recipient_token

recipients_app = typer.Typer(help="Delta Sharing recipients.", no_args_is_help=True)


@recipients_app.command("token")
def recipient_token(
    organization: str,
    days: Annotated[int, typer.Option(min=1, max=366)] = 90,
    endpoint: Annotated[
        str | None, typer.Option(help="Public URL of the server (default http://HOST:PORT).")
    ] = None,
    home: Home = None,
) -> None:
    """Write HOME/profiles/ORG.share: a profile any Delta Sharing client can read with."""
    settings = load_settings(home)
    with unit_of_work(home) as session:
        path, token_id = write_profile(
            session, settings, organization, days=days, endpoint=endpoint
        )
    out.print(f"profile for {organization} (token {token_id}) written to {path}")


def write_profile(
    session: Session, settings: Settings, organization: str, *, days: int, endpoint: str | None
) -> tuple[Path, str]:
    """Issue a recipient token and write HOME/profiles/ORG.share (owner-readable only)."""
    base = endpoint or f"http://{settings.host}:{settings.port}"
    org = get_organization(session, organization)
    token, secret = issue_recipient_token(session, org, days=days, now=SystemClock().now())
    profile = {
        "shareCredentialsVersion": 1,
        "endpoint": f"{base.rstrip('/')}/delta-sharing",
        "bearerToken": secret,
        "expirationTime": token.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    settings.profiles_dir.mkdir(parents=True, exist_ok=True)
    path = settings.profiles_dir / f"{organization}.share"
    path.write_text(json.dumps(profile, indent=2) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path, token.id
