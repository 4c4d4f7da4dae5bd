"""Rendering: one Jinja environment (autoescaping every template) and what pages show in words."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib.resources import files
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar import Request, Response
from litestar.enums import MediaType

from catalog.console.auth import console_state, is_visitor
from catalog.products.models import (
    Classification,
    ColumnSpec,
    ProductVersion,
    Tier,
    duration_seconds,
)

TEMPLATES = files("catalog.console") / "templates"
STATIC = files("catalog.console") / "static"

_env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def _day(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d") if value else "—"


_env.filters["when"] = _when
_env.filters["day"] = _day


def render(
    request: Request[Any, Any, Any], template: str, *, status: int = 200, **context: Any
) -> Response[str]:
    """A page (or, for htmx, the same template: fragments are blocks the template skips)."""
    state = console_state(request)
    user = request.scope.get("user")
    signed_in = user is not None and not is_visitor(user)
    context.setdefault("notice", None)
    settings = request.app.state.settings
    context.setdefault("oidc_enabled", bool(settings.oidc_issuer and settings.oidc_client_id))
    body = _env.get_template(template).render(
        request=request,
        viewer=user if signed_in else None,
        csrf=state.csrf,
        htmx=request.headers.get("hx-request") == "true",
        nav=navigation(user) if signed_in else [],
        now=request.app.state.clock.now(),
        **context,
    )
    return Response(content=body, status_code=status, media_type=MediaType.HTML)


def navigation(user: Any) -> list[tuple[str, str]]:
    """The sections a person's rights open, asked of the policy engine."""
    links = [("/console/catalog", "Catalog")]
    if user.can("*", "version", "publish") or publishes_somewhere(user):
        links.append(("/console/publish", "Publishing"))
    if user.organization and user.can("*", "own-request", "create"):
        links += [
            ("/console/requests/new", "Request access"),
            ("/console/my/requests", "My requests"),
            ("/console/my/grants", "My grants"),
        ]
    if user.can("*", "request", "approve"):
        links.append(("/console/review", "Review queue"))
    if user.can("*", "grant", "revoke"):
        links.append(("/console/grants", "Grants"))
    if user.can("*", "dua", "read"):
        links.append(("/console/duas", "DUAs"))
    if user.can("*", "recipient", "manage"):
        links.append(("/console/recipients", "Recipients"))
    if user.can("*", "audit", "read"):
        links.append(("/console/audit", "Audit trail"))
        links.append(("/console/audit/disclosures", "Disclosures"))
    return links


def publishes_somewhere(user: Any) -> bool:
    """Whether the person holds the publisher role in some domain (roles are per domain)."""
    policy = getattr(user, "policy", None)
    return policy is not None and any(role == "publisher" for role, _ in policy.roles_of(user.name))


# What each tier does to a column of each classification (catalog/publishing/tiers/rules.py derives
# the tables; this is the same rule in words for people choosing a tier).
TIER_EFFECT: dict[Classification, dict[Tier, str]] = {
    Classification.DIRECT_IDENTIFIER: {
        Tier.FULL: "kept",
        Tier.LIMITED: "random surrogate if it names a record, else removed",
        Tier.DEIDENTIFIED: "random surrogate (this tier's own) if it names a record, else removed",
    },
    Classification.QUASI_IDENTIFIER: {
        Tier.FULL: "kept",
        Tier.LIMITED: "kept",
        Tier.DEIDENTIFIED: "removed",
    },
    Classification.DATE: {
        Tier.FULL: "kept",
        Tier.LIMITED: "kept",
        Tier.DEIDENTIFIED: "year only; empty when it shows an age of 90+",
    },
    Classification.ZIP: {
        Tier.FULL: "kept",
        Tier.LIMITED: "5 digits",
        Tier.DEIDENTIFIED: "3 digits, 000 for restricted areas",
    },
    Classification.AGE: {Tier.FULL: "kept", Tier.LIMITED: "kept", Tier.DEIDENTIFIED: "90+ capped"},
    Classification.FREE_TEXT: {
        Tier.FULL: "kept",
        Tier.LIMITED: "removed",
        Tier.DEIDENTIFIED: "removed",
    },
    Classification.CLINICAL: {t: "kept" for t in Tier},
    Classification.NONE: {t: "kept" for t in Tier},
}


def tier_effect(column: ColumnSpec, tier: Tier) -> str:
    """What `tier` does to `column`; record keys (`surrogate:`) say which way they go."""
    if column.classification == Classification.DIRECT_IDENTIFIER and tier != Tier.FULL:
        return "random surrogate (this tier's own)" if column.surrogate else "removed"
    return TIER_EFFECT[column.classification][tier]


@dataclass(frozen=True)
class Freshness:
    """A version's data age against its freshness promise."""

    state: str  # fresh | stale | overdue | unknown
    text: str


def freshness(version: ProductVersion | None, now: datetime) -> Freshness:
    """fresh: extracted within the promise; stale: within twice it; overdue: later than that."""
    if version is None or version.extracted_at is None:
        return Freshness("unknown", "not published yet")
    # The stored SLA is a validated `Sla` dumped; its one field is read without re-validating
    # the whole version spec (a search page asks this of every row).
    stored = (version.sla or {}).get("freshness")
    promise = stored if isinstance(stored, str) else None
    age = now - version.extracted_at
    if not promise:
        return Freshness("unknown", f"extracted {_when(version.extracted_at)}; no promise")
    limit = timedelta(seconds=duration_seconds(promise))
    hours = age.total_seconds() / 3600
    text = f"extracted {hours:.0f} h ago; promise {promise}"
    if age <= limit:
        return Freshness("fresh", text)
    if age <= 2 * limit:
        return Freshness("stale", text)
    return Freshness("overdue", text)


def countdown(until: datetime, now: datetime) -> str:
    """`in 12 days`, `in 5 hours`, or `ended`."""
    left = until - now
    if left <= timedelta(0):
        return "ended"
    if left >= timedelta(days=2):
        return f"in {left.days} days"
    return f"in {int(left.total_seconds() // 3600)} hours"
