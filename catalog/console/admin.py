"""Platform admin pages beside the review queue: a grant's re-review, recipient credentials per
organisation (tokens, activation links, the IP allow-list) and DUAs with their grants.

Each page calls the services the API calls (`policies.access`, `sharing.recipients`) and
declares the API route's permission, so the app's guard decides and audits a refusal.
"""

import json
from datetime import datetime, timedelta
from typing import Annotated, Any

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, PathParameter
from litestar.response import Redirect

from catalog.console.auth import ROOT
from catalog.console.call import ConsoleCall
from catalog.console.routes import Form, Text, _field, _grants
from catalog.console.views import countdown
from catalog.kernel.errors import InvalidParameter
from policies.duas.models import Dua
from policies.duas.service import dua_read, list_duas
from policies.grants.service import review_grant
from policies.principals.service import get_organization, list_organizations
from sharing.recipients import service as recipients

RECIPIENTS_READ = {"permission": "recipient:read"}
RECIPIENTS_MANAGE = {"permission": "recipient:manage"}
GRANT_REVIEW = {"permission": "grant:review"}
DUAS = {"permission": "dua:read"}
OrgName = Annotated[str, PathParameter(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
# A DUA ending within this long is flagged on the DUAs page.
DUA_WARNING = timedelta(days=30)
NOTICES = {
    "revoked": "The tokens were revoked: their next request is refused.",
    "networks": "The allow-list was saved; it applies from the next request.",
}


def _days(form: dict[str, Any], name: str, default: int, maximum: int, minimum: int = 1) -> int:
    """A whole number from a form field (empty: `default`) within [minimum, maximum]."""
    text = _field(form, name)
    if not text:
        return default
    if not text.isdigit() or not minimum <= int(text) <= maximum:
        raise InvalidParameter(f"{name} must be a whole number from {minimum} to {maximum}")
    return int(text)


class GrantReviewController(Controller):
    """Record a grant's periodic re-review (review due, or suspended for want of it)."""

    path = f"{ROOT}/grants"

    @post("/{grant_id:int}/review", opt=GRANT_REVIEW, sync_to_thread=True, status_code=303)
    def review(
        self, grant_id: FromPath[int], data: Form, call: NamedDependency[ConsoleCall]
    ) -> Redirect:
        """The same service as `POST /api/v1/grants/{id}/review`."""
        review_grant(
            call.session,
            grant_id,
            reason=_field(data, "reason") or None,
            actor=call.me,
            settings=call.settings,
            clock=call.clock,
        )
        return Redirect(f"{ROOT}/grants?notice=reviewed", status_code=303)


class RecipientsController(Controller):
    """Delta Sharing credentials of each consumer organisation."""

    path = f"{ROOT}/recipients"

    @get("/", opt=RECIPIENTS_READ, sync_to_thread=True)
    def index(self, call: NamedDependency[ConsoleCall]) -> Response[str]:
        """Every organisation with its live tokens and allow-list."""
        now = call.clock.now()
        rows = []
        for org in list_organizations(call.session, actor=call.me):
            tokens = recipients.list_tokens(call.session, org)
            live = [t for t in tokens if t.revoked_at is None and t.expires_at > now]
            rows.append((org, len(live), recipients.networks(call.session, org)))
        return call.render("recipients.html", rows=rows)

    @get("/{organization:str}", opt=RECIPIENTS_READ, sync_to_thread=True)
    def one(
        self,
        organization: OrgName,
        call: NamedDependency[ConsoleCall],
        notice: Text = None,
    ) -> Response[str]:
        """One organisation's tokens, allow-list and the actions on them."""
        org = get_organization(call.session, organization)
        now = call.clock.now()
        tokens = [
            (t, _token_state(t.expires_at, t.revoked_at, now))
            for t in recipients.list_tokens(call.session, org)
        ]
        return call.render(
            "recipient.html",
            org=org,
            tokens=tokens,
            cidrs=recipients.networks(call.session, org),
            may_manage=call.me.can("*", "recipient", "manage"),
            notice=NOTICES.get(notice or ""),
        )

    @post("/{organization:str}/rotate", opt=RECIPIENTS_MANAGE, sync_to_thread=True)
    def rotate(
        self, organization: OrgName, data: Form, call: NamedDependency[ConsoleCall]
    ) -> Response[str]:
        """A new token in a profile shown on this answer only; older tokens end after grace."""
        org = get_organization(call.session, organization)
        token, credential = recipients.rotate_token(
            call.session,
            org,
            days=_days(data, "days", 90, 366),
            grace=timedelta(hours=_days(data, "grace_hours", 24, 24 * 30, minimum=0)),
            actor=call.me,
            now=call.clock.now(),
        )
        profile = recipients.profile(str(call.request.base_url), token, credential)
        return call.render(
            "recipient_issued.html",
            org=org,
            what="profile",
            secret=json.dumps(profile, indent=2),
            expires_at=token.expires_at,
        )

    @post("/{organization:str}/activation", opt=RECIPIENTS_MANAGE, sync_to_thread=True)
    def activation(
        self, organization: OrgName, data: Form, call: NamedDependency[ConsoleCall]
    ) -> Response[str]:
        """A one-time activation link, shown on this answer only."""
        org = get_organization(call.session, organization)
        link, secret = recipients.create_activation(
            call.session,
            org,
            token_days=_days(data, "days", 90, 366),
            valid_for=timedelta(hours=_days(data, "valid_hours", 72, 24 * 30)),
            actor=call.me,
            now=call.clock.now(),
        )
        url = f"{str(call.request.base_url).rstrip('/')}{ROOT}/activate/{secret}"
        return call.render(
            "recipient_issued.html",
            org=org,
            what="link",
            secret=url,
            expires_at=link.expires_at,
        )

    @post("/{organization:str}/revoke", opt=RECIPIENTS_MANAGE, sync_to_thread=True, status_code=303)
    def revoke(
        self, organization: OrgName, data: Form, call: NamedDependency[ConsoleCall]
    ) -> Redirect:
        """Revoke one token (`token_id`) or every live one."""
        org = get_organization(call.session, organization)
        recipients.revoke_tokens(
            call.session,
            org,
            token_id=_field(data, "token_id") or None,
            actor=call.me,
            now=call.clock.now(),
        )
        return Redirect(f"{ROOT}/recipients/{org.name}?notice=revoked", status_code=303)

    @post(
        "/{organization:str}/networks", opt=RECIPIENTS_MANAGE, sync_to_thread=True, status_code=303
    )
    def networks(
        self, organization: OrgName, data: Form, call: NamedDependency[ConsoleCall]
    ) -> Redirect:
        """Replace the allow-list: one address or CIDR range a line (empty: any address)."""
        org = get_organization(call.session, organization)
        lines = [line.strip() for line in _field(data, "cidrs").splitlines() if line.strip()]
        recipients.set_networks(call.session, org, lines, actor=call.me, now=call.clock.now())
        return Redirect(f"{ROOT}/recipients/{org.name}?notice=networks", status_code=303)


def _token_state(expires_at: datetime, revoked_at: datetime | None, now: datetime) -> str:
    if revoked_at is not None:
        return "revoked"
    return "expired" if expires_at <= now else f"live, ends {countdown(expires_at, now)}"


def dua_warning(dua: Dua, now: datetime) -> str | None:
    """Why a DUA needs attention: revoked, ended, not yet in force, or ending soon."""
    if dua.revoked_at is not None:
        return "revoked: its grants are not served"
    if dua.expires_at <= now:
        return "expired: its grants are not served"
    if dua.effective_from > now:
        return "not in force yet"
    if dua.expires_at - now <= DUA_WARNING:
        return f"ends {countdown(dua.expires_at, now)}: its grants end with it"
    return None


class DuasController(Controller):
    """DUAs with expiry warnings and the grants each one covers."""

    path = f"{ROOT}/duas"

    @get("/", opt=DUAS, sync_to_thread=True)
    def duas(
        self,
        call: NamedDependency[ConsoleCall],
        organization: Text = None,
        cursor: Text = None,
    ) -> Response[str]:
        """A page of DUAs, soonest-ending first, each with its grants."""
        me = call.me
        now = call.clock.now()
        items, nxt = list_duas(
            call.session,
            actor=me,
            organization=organization or None,
            limit=call.settings.default_page_size,
            cursor=cursor,
        )
        rows = []
        for dua in sorted(items, key=lambda d: d.expires_at):
            grants = _grants(call, now, dua_id=dua.id)
            rows.append((dua_read(call.session, dua, now), dua_warning(dua, now), grants))
        return call.render(
            "duas.html",
            rows=rows,
            next_cursor=nxt,
            organization=organization or "",
            may_revoke=me.can("*", "grant", "revoke"),
        )
