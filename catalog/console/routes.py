"""The console's pages: each parses its input, calls the same services as the API, renders.

Every handler declares the permission it needs like the API's routes do (`opt`), so the app's
one permission guard decides, and audits a refusal, before any handler runs; services then make
the same data-dependent checks they make for the API. State-changing handlers run after the
CSRF check (`check_csrf`, a before-request hook of the console router).
"""

from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, PathParameter, QueryParameter
from litestar.response import Redirect, Stream
from sqlalchemy.engine import Engine
from sqlmodel import Session

from catalog.audit import chain
from catalog.audit import service as audit
from catalog.audit.routes import FILTERS
from catalog.audit.service import AuditFilters
from catalog.console.auth import ROOT, console_state, viewer
from catalog.console.call import ConsoleCall
from catalog.console.session import new_session, sign_out_session
from catalog.console.views import countdown, freshness, render, tier_effect
from catalog.kernel.db import transaction
from catalog.kernel.errors import InvalidParameter, MeshError, NotFound, Unauthenticated
from catalog.kernel.settings import Settings
from catalog.products import service as products
from catalog.products.models import DataProduct, ProductStatus, Tier, VersionStatus
from policies.auth import Authenticator, record_auth_failure
from policies.duas.models import Dua
from policies.duas.service import dua_covers, dua_read, get_dua, list_duas
from policies.enforcer import PolicyEngine
from policies.grants.models import GrantRead
from policies.grants.service import grant_read, list_grants, readable, revoke_grant
from policies.minimum_necessary import PolicyRefusal, check_minimum_necessary
from policies.models import GrantState, Purpose, RequestStatus
from policies.principals.models import Organization
from policies.principals.service import get_organization
from policies.requests import renewal
from policies.requests.models import AccessRequestCreate
from policies.requests.service import (
    approve_request,
    create_request,
    deny_request,
    four_eyes_blocked,
    four_eyes_refusal,
    get_request,
    list_requests,
    recent_decisions,
    request_listing,
    request_read,
)
from sharing.recipients import service as recipients

# `authenticated` lets every caller through the app's guard; for the console's public pages the
# caller is a Visitor whom no permission check allows anything.
OPEN = {"permission": "authenticated"}
CATALOG = {"permission": "catalog:read"}
CONSUMER = {"permission": "own-request:read"}
FILING = {"permission": "own-request:create"}
REVIEW = {"permission": "request:approve"}
GRANTS = {"permission": "grant:read"}
REVOKE = {"permission": "grant:revoke"}
AUDIT = {"permission": "audit:read"}
RECIPIENT = {"permission": "recipient:manage"}
Form = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)]
Text = Annotated[str | None, QueryParameter(max_length=200)]
Req = Request[Any, Any, Any]
FRESHNESS = "^(fresh|stale|overdue|unknown)$"
NOTICES = {
    "approved": "Approved: the grants below were created.",
    "denied": "Denied; the requester sees your reason.",
    "filed": "Your request was filed; a platform admin will decide.",
    "renewal": "Your renewal request was filed; a platform admin will decide. The grant keeps "
    "working until it ends.",
    "revoked": "The grant was revoked; the next read is refused.",
    "reviewed": "The re-review was recorded; the next review falls one review period later.",
    "signed-out": "You are signed out.",
}


def _field(form: dict[str, Any], name: str) -> str:
    value = form.get(name, "")
    if isinstance(value, list):
        value = value[-1] if value else ""
    return str(value).strip()


def _fields(form: dict[str, Any], name: str) -> list[str]:
    value = form.get(name, [])
    return [str(v) for v in (value if isinstance(value, list) else [value]) if str(v)]


E = TypeVar("E", bound=StrEnum)


def _choice(kind: type[E], value: str | None, name: str) -> E | None:
    """An enum value from a form field; empty is None."""
    if not value:
        return None
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(kind)
        raise InvalidParameter(f"{name} must be one of {allowed}, got {value!r}") from None


def _number(value: str | None, name: str) -> int | None:
    """A positive row number from a form field; empty is None."""
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise InvalidParameter(f"{name} must be a positive number, got {value!r}")
    return int(value)


def _moment(value: str | None, name: str) -> datetime | None:
    """An ISO time from a form field (naive: UTC); empty is None."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidParameter(f"{name} must be an ISO date or time, got {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _end_of(day: str) -> datetime:
    try:
        parsed = date.fromisoformat(day)
    except ValueError:
        raise InvalidParameter(f"end date {day!r} is not a date (YYYY-MM-DD)") from None
    return datetime.combine(parsed, time(23, 59, 59), tzinfo=UTC)


class HomeController(Controller):
    """Sign-in, sign-out and the start page."""

    path = ROOT

    @get("/", opt=OPEN, sync_to_thread=False)
    def home(self, request: Req, notice: Text = None) -> Response[str]:
        """What the signed-in person can do."""
        return render(request, "home.html", notice=NOTICES.get(notice or ""), me=viewer(request))

    @get("/sign-in", opt=OPEN, sync_to_thread=False)
    def sign_in_page(
        self,
        request: Req,
        expired: Text = None,
        notice: Text = None,
        next_page: Annotated[str | None, QueryParameter(name="next", max_length=200)] = None,
    ) -> Response[str]:
        """The sign-in form."""
        message = "Your session ended; sign in again." if expired else NOTICES.get(notice or "")
        return render(request, "sign_in.html", notice=message, error=None, next_page=next_page)

    @post("/sign-in", opt=OPEN, sync_to_thread=True, status_code=303)
    def sign_in(
        self, request: Req, data: Form, settings: NamedDependency[Settings]
    ) -> Response[Any]:
        """Check the API token like the API does; on success start a new session."""
        token = _field(data, "token")
        state = request.app.state
        authenticator: Authenticator = state.authenticator
        # The API's bearer mechanism (policies.auth.BearerAuthMiddleware): the credential is
        # judged first, so a valid token is never refused by the failure limiter; only a
        # failure is counted and limited (record_auth_failure raises TooManyRequests, 429).
        try:
            with Session(state.engine) as session:
                authenticator.caller(session, token or None)
        except Unauthenticated as exc:
            record_auth_failure(request, token or None, f"console sign-in: {exc.detail}")
            return render(
                request,
                "sign_in.html",
                status=401,
                notice=None,
                error="That token was not accepted: it is unknown, expired or revoked.",
                next_page=None,
            )
        now = state.clock.now()
        console_state(request).outgoing = new_session(now, token)  # a new id: no fixation
        target = _field(data, "next")
        if not target.startswith(f"{ROOT}/") or target.startswith("//"):
            target = f"{ROOT}/"
        return Redirect(target, status_code=303)

    @post("/sign-out", opt=OPEN, sync_to_thread=True, status_code=303)
    def sign_out(self, call: NamedDependency[ConsoleCall]) -> Redirect:
        """End the session: its id is refused from now on (a copied cookie included), and the
        cookie is cleared."""
        state = console_state(call.request)
        sign_out_session(call.session, state.session, principal=call.me.name, now=call.clock.now())
        state.clear = True
        return Redirect(f"{ROOT}/sign-in?notice=signed-out", status_code=303)


def _latest_published(product: DataProduct) -> Any:
    live = [
        v
        for v in product.versions
        if v.status in (VersionStatus.PUBLISHED, VersionStatus.DEPRECATED)
    ]
    return max(live, key=lambda v: v.semver, default=None)


def _grants(
    call: ConsoleCall,
    now: datetime,
    *,
    organization: str | None = None,
    product: str | None = None,
    dua_id: int | None = None,
) -> list[GrantRead]:
    """The grants the viewer may see (up to the largest page), as they stand at `now`."""
    items, _ = list_grants(
        call.session,
        actor=call.me,
        settings=call.settings,
        clock=call.clock,
        organization=organization,
        product=product,
        state=None,
        limit=call.settings.max_page_size,
        cursor=None,
        dua_id=dua_id,
    )
    return [grant_read(call.session, g, settings=call.settings, now=now) for g in items]


class CatalogController(Controller):
    """Search and product pages (every principal: `catalog:read`)."""

    path = f"{ROOT}/catalog"

    @get("/", opt=CATALOG, sync_to_thread=True)
    def search(
        self,
        call: NamedDependency[ConsoleCall],
        q: Text = None,
        domain: Text = None,
        tag: Text = None,
        tier: Text = None,
        status: Text = None,
        fresh: Annotated[
            str | None, QueryParameter(pattern="^(fresh|stale|overdue|unknown)?$")
        ] = None,
        cursor: Text = None,
    ) -> Response[str]:
        """Products matching every filter, a page at a time; facets from the whole catalog.

        Empty fields (a form submitted without JavaScript sends every field) are no filter.
        """
        query = products.ProductQuery(
            q=q or None,
            domain=domain or None,
            tag=tag or None,
            tier=_choice(Tier, tier, "tier"),
            status=_choice(ProductStatus, status, "status"),
        )
        page = products.search_products(call.session, query, limit=call.page_size, cursor=cursor)
        now = call.clock.now()
        rows = []
        for product in page.items:
            version = _latest_published(product)
            state = freshness(version, now)
            if fresh and state.state != fresh:
                continue
            rows.append({"product": products.product_read(product), "freshness": state})
        tags = products.list_tags(call.session)  # facets of the whole catalog, in one query
        return call.render(
            "catalog.html",
            rows=rows,
            next_cursor=page.next_cursor,
            domains=[d.name for d in products.list_domains(call.session)],
            tags=tags,
            tiers=list(Tier),
            statuses=list(ProductStatus),
            filters={
                "q": q or "",
                "domain": domain or "",
                "tag": tag or "",
                "tier": tier or "",
                "status": status or "",
                "fresh": fresh or "",
            },
        )

    @get("/{domain:str}/{name:str}", opt=CATALOG, sync_to_thread=True)
    def product(
        self,
        domain: FromPath[str],
        name: FromPath[str],
        call: NamedDependency[ConsoleCall],
        version: Text = None,
    ) -> Response[str]:
        """One product: owner, versions, schema with classifications, SLA, lineage, tiers."""
        found = products.get_product(call.session, domain, name)
        detail = products.product_detail(found)
        chosen = (
            products.get_version(call.session, domain, name, version)
            if version
            else _latest_published(found)
            or max(found.versions, key=lambda v: v.semver, default=None)
        )
        read = products.version_read(chosen) if chosen is not None else None
        return call.render(
            "product.html",
            product=detail,
            domain=products.get_domain(call.session, domain),
            version=read,
            freshness=freshness(chosen, call.clock.now()),
            tier_effect=tier_effect,
            tiers=list(Tier),
        )


def _own_duas(session: Session, actor: Any, settings: Settings) -> list[Dua]:
    items, _ = list_duas(
        session, actor=actor, organization=None, limit=settings.max_page_size, cursor=None
    )
    return items


def _verdicts(
    policy: PolicyEngine,
    dua: Dua,
    refs: list[str],
    tier: Tier,
    purpose: Purpose,
    justification: str,
    now: datetime,
) -> list[tuple[str, str | None]]:
    """Per product: None when the minimum-necessary rules allow the tier, else why not."""
    out: list[tuple[str, str | None]] = []
    for ref in refs:
        try:
            check_minimum_necessary(
                policy,
                dua,
                product=ref,
                tier=tier,
                purpose=purpose,
                justification=justification,
                now=now,
            )
            out.append((ref, None))
        except PolicyRefusal as exc:
            out.append((ref, exc.detail))
    return out


class ConsumerController(Controller):
    """The request wizard, my requests, my grants (consumers, for their organisation)."""

    path = ROOT

    @get("/requests/new", opt=FILING, sync_to_thread=True)
    def wizard(
        self,
        call: NamedDependency[ConsoleCall],
        dua_field: Annotated[str | None, QueryParameter(name="dua", max_length=12)] = None,
        tier_field: Annotated[str | None, QueryParameter(name="tier", max_length=20)] = None,
        product: Annotated[list[str] | None, QueryParameter(max_items=100)] = None,
        justification: Annotated[str | None, QueryParameter(max_length=4000)] = None,
        end: Annotated[str | None, QueryParameter(max_length=10)] = None,
        step: Text = None,
    ) -> Response[str]:
        """Pick a DUA, a tier it permits, products, justification and end date; review."""
        dua, tier = _number(dua_field, "dua"), _choice(Tier, tier_field, "tier")
        me = call.me
        now = call.clock.now()
        duas = _own_duas(call.session, me, call.settings)
        chosen = next((d for d in duas if d.id == dua), None)
        if dua is not None and chosen is None:
            raise NotFound(f"DUA {dua} not found")
        context: dict[str, Any] = {
            "duas": [dua_read(call.session, d, now) for d in duas],
            "dua": dua_read(call.session, chosen, now) if chosen else None,
            "tier": tier,
            "selected": product or [],
            "justification": justification or "",
            "end": end or "",
            "step": step or "",
            "tier_options": [],
            "candidates": [],
            "verdicts": [],
            "error": None,
        }
        if chosen is not None:
            purpose = Purpose(chosen.purpose)
            catalog = products.search_products(
                call.session,
                products.ProductQuery(status=ProductStatus.ACTIVE),
                limit=call.settings.max_page_size,
            ).items
            refs = [products.product_key(p.domain.name, p.name) for p in catalog]
            covered = [r for r in refs if dua_covers(chosen, r)]
            context["candidates"] = covered
            probe = covered[:1] or refs[:1]
            for option in Tier:
                why = _verdicts(
                    call.policy, chosen, probe, option, purpose, justification or "", now
                )
                reason = why[0][1] if why else "no product in the catalog"
                if option == Tier.FULL and reason and "justification" in reason:
                    reason = reason  # shown as is: the full tier needs a justification
                context["tier_options"].append((option, reason))
            if step == "review" and tier is not None:
                try:
                    requested_days(end or "", chosen, now)
                    if not product:
                        raise InvalidParameter("choose at least one product")
                    if len((justification or "").strip()) < 10:
                        raise InvalidParameter(
                            "a justification of at least 10 characters is needed"
                        )
                    context["verdicts"] = _verdicts(
                        call.policy, chosen, product, tier, purpose, justification or "", now
                    )
                except InvalidParameter as exc:
                    context["error"] = exc.detail
                    context["step"] = ""
        return call.render("wizard.html", **context)

    @post("/requests", opt=FILING, sync_to_thread=True, status_code=303)
    def file_request(self, data: Form, call: NamedDependency[ConsoleCall]) -> Redirect:
        """File the reviewed request through the same service as the API."""
        now = call.clock.now()
        dua_id = int(_field(data, "dua") or 0)
        dua = get_dua(call.session, dua_id)
        spec = AccessRequestCreate(
            products=_fields(data, "product"),
            tier=Tier(_field(data, "tier")),
            dua_id=dua_id,
            purpose=Purpose(dua.purpose),
            justification=_field(data, "justification"),
            requested_days=requested_days(_field(data, "end"), dua, now),
        )
        filed = create_request(
            call.session, spec, actor=call.me, policy=call.policy, clock=call.clock
        )
        return Redirect(f"{ROOT}/my/requests?notice=filed#request-{filed.id}", status_code=303)

    @get("/my/requests", opt=CONSUMER, sync_to_thread=True)
    def my_requests(
        self,
        call: NamedDependency[ConsoleCall],
        notice: Text = None,
        cursor: Text = None,
    ) -> Response[str]:
        """The organisation's requests with their status."""
        me = call.me
        items, nxt = list_requests(
            call.session,
            actor=me,
            status=None,
            product=None,
            organization=me.organization,
            limit=call.page_size,
            cursor=cursor,
        )
        return call.render(
            "my_requests.html",
            requests=[request_read(call.session, r) for r in reversed(items)],
            next_cursor=nxt,
            notice=NOTICES.get(notice or ""),
        )

    @get("/my/grants", opt={"permission": "own-grant:read"}, sync_to_thread=True)
    def my_grants(
        self,
        call: NamedDependency[ConsoleCall],
        notice: Text = None,
    ) -> Response[str]:
        """The organisation's grants: state, expiry countdown, notices."""
        now = call.clock.now()
        grants = _grants(call, now, organization=call.me.organization)
        duas = {g.dua_id: get_dua(call.session, g.dua_id) for g in grants}
        return call.render(
            "my_grants.html",
            grants=[(g, countdown(g.expires_at, now)) for g in reversed(grants)],
            duas=duas,
            renewal_due={g.id: renewal.renewal_due(g.expires_at, now) for g in grants},
            noticed=[g for g in grants if g.notices and readable(g.state)],
            notice=NOTICES.get(notice or ""),
        )


def requested_days(end: str, dua: Dua, now: datetime) -> int:
    """Days from now to the chosen end date, which may not pass the DUA's expiry."""
    if not end:
        raise InvalidParameter("choose an end date")
    until = _end_of(end)
    if until > dua.expires_at + timedelta(days=1) or until.date() > dua.expires_at.date():
        raise InvalidParameter(
            f"the end date is capped at the DUA's expiry, {dua.expires_at.date().isoformat()}"
        )
    days = (until.date() - now.date()).days
    if days < 1:
        raise InvalidParameter("the end date must be after today")
    return days


class ReviewController(Controller):
    """The platform admins' review queue and decisions (`request:approve`)."""

    path = f"{ROOT}/review"

    @get("/", opt=REVIEW, sync_to_thread=True)
    def queue(
        self,
        call: NamedDependency[ConsoleCall],
        show: Annotated[str | None, QueryParameter(pattern="^(mine|pending|all)?$")] = None,
        product: Text = None,
        tier_field: Annotated[str | None, QueryParameter(name="tier", max_length=20)] = None,
        dua_field: Annotated[str | None, QueryParameter(name="dua", max_length=12)] = None,
        older: Annotated[str | None, QueryParameter(max_length=5)] = None,
        notice: Text = None,
        cursor: Text = None,
    ) -> Response[str]:
        """Pending requests; by default those this admin may decide (the four-eyes rule).

        Product, tier, DUA and age (filed at least `older` days ago) filter in the service's
        query; "needs my decision" leaves out, per page, what the four-eyes rule refuses me.
        """
        tier, dua = _choice(Tier, tier_field, "tier"), _number(dua_field, "dua")
        age = _number(older, "age in days")
        me = call.me
        view = show or "mine"
        now = call.clock.now()
        items, nxt = list_requests(
            call.session,
            actor=me,
            status=None if view == "all" else RequestStatus.PENDING,
            product=product or None,
            organization=None,
            limit=call.page_size,
            cursor=cursor,
            tier=tier,
            dua_id=dua,
            filed_before=now - timedelta(days=age) if age else None,
        )
        blocked = four_eyes_blocked(call.session, items, actor=me) if view == "mine" else set()
        rows = request_listing(call.session, [r for r in items if r.id not in blocked])
        filters = {
            "show": view,
            "product": product or "",
            "tier": tier or "",
            "dua": dua or "",
            "older": age or "",
        }
        return call.render(
            "review_queue.html",
            rows=rows,
            next_cursor=nxt,
            filters=filters,
            query=urlencode({k: v for k, v in filters.items() if v}),
            tiers=list(Tier),
            notice=NOTICES.get(notice or ""),
        )

    @get("/{request_id:int}", opt=REVIEW, sync_to_thread=True)
    def one(
        self,
        request_id: FromPath[int],
        call: NamedDependency[ConsoleCall],
        notice: Text = None,
    ) -> Response[str]:
        """Everything needed to decide one request."""
        me = call.me
        now = call.clock.now()
        found = get_request(call.session, request_id, actor=me)
        read = request_read(call.session, found)
        dua = get_dua(call.session, read.dua_id)
        org = call.session.get(Organization, found.organization_id)
        verdicts = {
            t: _verdicts(call.policy, dua, read.products, t, read.purpose, read.justification, now)
            for t in Tier
        }
        grants = _grants(call, now, organization=read.organization)
        domains = {ref.partition("/")[0] for ref in read.products}
        return call.render(
            "review_one.html",
            recent={
                ref: [
                    request_read(call.session, r)
                    for r in recent_decisions(
                        call.session, ref, actor=me, exclude=request_id, limit=5
                    )
                ]
                for ref in read.products
            },
            owners={
                c.author
                for c in read.comments
                if any(call.policy.allowed(c.author, d, "version", "publish") for d in domains)
                and not call.policy.allowed(c.author, "*", "version", "publish")
            },
            req=read,
            org=org,
            dua=dua_read(call.session, dua, now),
            verdicts=verdicts,
            tiers=list(Tier),
            own=read.requester == me.name,
            # The service's own rule (requester, its creator, an issuer of its token).
            four_eyes=four_eyes_refusal(call.session, found, actor=me),
            grants=grants,
            created=[g for g in grants if g.request_id == read.id],
            requested_end=(read.created_at + timedelta(days=read.requested_days)).date(),
            notice=NOTICES.get(notice or ""),
            activation=None,
        )

    @post("/{request_id:int}/approve", opt=REVIEW, sync_to_thread=True, status_code=303)
    def approve(
        self, request_id: FromPath[int], data: Form, call: NamedDependency[ConsoleCall]
    ) -> Redirect:
        """Approve through the service (four eyes, minimum necessary re-checked there)."""
        end = _field(data, "end")
        approve_request(
            call.session,
            request_id,
            reason=_field(data, "reason") or None,
            actor=call.me,
            policy=call.policy,
            settings=call.settings,
            clock=call.clock,
            expires_at=_end_of(end) if end else None,
        )
        return Redirect(f"{ROOT}/review/{request_id}?notice=approved", status_code=303)

    @post("/{request_id:int}/deny", opt=REVIEW, sync_to_thread=True, status_code=303)
    def deny(
        self, request_id: FromPath[int], data: Form, call: NamedDependency[ConsoleCall]
    ) -> Redirect:
        """Deny with a reason."""
        deny_request(
            call.session, request_id, reason=_field(data, "reason"), actor=call.me, clock=call.clock
        )
        return Redirect(f"{ROOT}/review/{request_id}?notice=denied", status_code=303)

    @post("/{request_id:int}/activation", opt=RECIPIENT, sync_to_thread=True)
    def activation(
        self, request_id: FromPath[int], call: NamedDependency[ConsoleCall]
    ) -> Response[str]:
        """A one-time activation link for the request's organisation, shown on this answer only."""
        me = call.me
        found = get_request(call.session, request_id, actor=me)
        org = call.session.get(Organization, found.organization_id)
        if org is None:
            raise NotFound(f"organisation of request {request_id} not found")
        link, secret = recipients.create_activation(
            call.session,
            get_organization(call.session, org.name),
            token_days=90,
            valid_for=timedelta(hours=72),
            actor=me,
            now=call.clock.now(),
        )
        url = f"{str(call.request.base_url).rstrip('/')}{ROOT}/activate/{secret}"
        return call.render("activation_issued.html", org=org, url=url, expires_at=link.expires_at)


class GrantsController(Controller):
    """Every grant, with revoke (platform admins; auditors read)."""

    path = f"{ROOT}/grants"

    @get("/", opt=GRANTS, sync_to_thread=True)
    def grants(
        self,
        call: NamedDependency[ConsoleCall],
        consumer: Text = None,
        product: Text = None,
        state_field: Annotated[str | None, QueryParameter(name="state", max_length=20)] = None,
        expiring: Annotated[str | None, QueryParameter(max_length=5)] = None,
        notice: Text = None,
        cursor: Text = None,
    ) -> Response[str]:
        """Grants with state and expiry; expiring soon (within `expiring` days), review due,
        suspended."""
        grant_state = _choice(GrantState, state_field, "state")
        within = _number(expiring, "expiring within (days)")
        me = call.me
        items, nxt = list_grants(
            call.session,
            actor=me,
            settings=call.settings,
            clock=call.clock,
            organization=consumer or None,
            product=product or None,
            state=grant_state,
            limit=call.page_size,
            cursor=cursor,
            expiring_within=timedelta(days=within) if within else None,
        )
        now = call.clock.now()
        return call.render(
            "grants.html",
            grants=[
                (g, countdown(g.expires_at, now))
                for g in (
                    grant_read(call.session, i, settings=call.settings, now=now) for i in items
                )
            ],
            next_cursor=nxt,
            filters={
                "consumer": consumer or "",
                "product": product or "",
                "state": grant_state or "",
                "expiring": within or "",
            },
            states=list(GrantState),
            may_revoke=me.can("*", "grant", "revoke"),
            may_review=me.can("*", "grant", "review"),
            notice=NOTICES.get(notice or ""),
        )

    @post("/{grant_id:int}/revoke", opt=REVOKE, sync_to_thread=True, status_code=303)
    def revoke(
        self, grant_id: FromPath[int], data: Form, call: NamedDependency[ConsoleCall]
    ) -> Redirect:
        """Revoke at once, with a reason."""
        revoke_grant(
            call.session, grant_id, reason=_field(data, "reason"), actor=call.me, clock=call.clock
        )
        return Redirect(f"{ROOT}/grants?notice=revoked", status_code=303)


def _audit_query(
    filters: AuditFilters, since: datetime | None = None, until: datetime | None = None
) -> audit.AuditQuery:
    """The query of the trail's form: an empty field (every field is sent) is no filter."""
    given = {k: v or None for k, v in asdict(filters).items()}
    return audit.AuditQuery(**given, since=since, until=until)


# The filters the trail's export link carries.
EXPORTED = ("actor", "recipient", "product", "action")


class AuditController(Controller):
    """The audit trail for auditors and platform admins (`audit:read`), with the API's filters."""

    path = f"{ROOT}/audit"
    dependencies = FILTERS

    @get("/", opt=AUDIT, sync_to_thread=True)
    def trail(
        self,
        call: NamedDependency[ConsoleCall],
        filters: NamedDependency[AuditFilters],
        since_field: Annotated[str | None, QueryParameter(name="since", max_length=40)] = None,
        until_field: Annotated[str | None, QueryParameter(name="until", max_length=40)] = None,
        cursor: Text = None,
    ) -> Response[str]:
        """Entries matching the API's filters, newest first, with the chain's verification."""
        since, until = _moment(since_field, "since"), _moment(until_field, "until")
        query = _audit_query(filters, since, until)
        page = audit.list_events(call.session, query, limit=call.page_size, cursor=cursor)
        return call.render(
            "audit.html",
            page=page,
            verify=chain.verify_chain(call.session),
            filters={k: v or "" for k, v in asdict(filters).items()}
            | {
                "since": since.isoformat() if since else "",
                "until": until.isoformat() if until else "",
            },
            export={k: v for k, v in asdict(filters).items() if k in EXPORTED and v},
        )

    @get("/export", opt=AUDIT, sync_to_thread=True, media_type="application/x-ndjson")
    def export(
        self, engine: NamedDependency[Engine], filters: NamedDependency[AuditFilters]
    ) -> Stream:
        """The same entries as the API's export: NDJSON, oldest first, hashes included."""
        query = _audit_query(filters)

        def lines() -> Iterator[str]:
            with transaction(engine) as session:
                yield from (audit.ndjson_line(e) for e in audit.iter_events(session, query))

        return Stream(
            lines(),
            media_type="application/x-ndjson",
            headers={"Content-Disposition": 'attachment; filename="audit.ndjson"'},
        )


class ActivationController(Controller):
    """The page behind a one-time activation link: what it is, and a button to download once."""

    path = f"{ROOT}/activate"

    @get("/{secret:str}", opt=OPEN, sync_to_thread=True)
    def describe(
        self,
        secret: Annotated[str, PathParameter(max_length=200)],
        call: NamedDependency[ConsoleCall],
    ) -> Response[str]:
        """Describe the link without using it (mail scanners may prefetch it)."""
        try:
            link = recipients.find_activation(call.session, secret)
        except MeshError:
            raise NotFound("activation link not found") from None
        return call.render(
            "activate.html",
            used=link.used_at is not None,
            expired=link.expires_at <= call.clock.now(),
            expires_at=link.expires_at,
            action=f"/delta-sharing/activation/{secret}",
        )


CONTROLLERS = [
    HomeController,
    CatalogController,
    ConsumerController,
    ReviewController,
    GrantsController,
    AuditController,
    ActivationController,
]
