"""The one policy engine: every authorization decision goes through `PolicyEngine`.

Casbin holds the rules (`model.conf`, lines in the `casbin_rule` table). Each process keeps the
rules of one governance revision (`policies/revision.py`), which triggers bump whenever a policy
line changes, and reads the lines again when it moves. The sharing server asks for the rules at
the revision read for each request (`PolicyEngine.at`); an API request brings the engine to the
revision as it is authenticated (`PolicyEngine.observe`). Either way a policy change is enforced
from the next request. Checks made outside a request (commands, listeners) read the revision
again at most every `policy_refresh_seconds`.
"""

import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import casbin
from casbin import persist
from casbin.util import key_match
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from catalog.audit.context import redact
from catalog.audit.record import Actor
from catalog.kernel.clock import Clock
from catalog.kernel.errors import Forbidden, Unauthenticated
from policies.adapter import SessionAdapter, rule_values
from policies.models import CasbinRule
from policies.revision import Revision, read_revision

MODEL_PATH = Path(__file__).with_name("model.conf")
# Subjects and roles live in separate namespaces of the Casbin policy: a principal is
# `user:NAME`, a role is `role:NAME`, so no principal name can ever stand for a role (a principal
# called `platform-admin` is `user:platform-admin`, which no `p` line names).
USER_PREFIX = "user:"
ROLE_PREFIX = "role:"


def user_subject(name: str) -> str:
    """The Casbin subject of principal `name`."""
    return USER_PREFIX + name


def role_subject(role: str) -> str:
    """The Casbin subject of role `role`."""
    return ROLE_PREFIX + role


DEFAULT_POLICY = Path(__file__).with_name("policy.csv")


def default_policy_lines() -> list[list[str]]:
    """The shipped default policy: [ptype, values...] per line."""
    lines = []
    for raw in DEFAULT_POLICY.read_text(encoding="utf-8").splitlines():
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        ptype, _, rest = text.partition(",")
        # p2 lines carry a condition with commas-free Python; split it into exactly two values.
        values = rest.split(",", 1) if ptype == "p2" else rest.split(",")
        lines.append([ptype.strip(), *(v.strip() for v in values)])
    return lines


def _new_enforcer() -> casbin.Enforcer:
    enforcer = casbin.Enforcer(str(MODEL_PATH))
    # A role held in domain `*` applies in every domain.
    enforcer.add_named_domain_matching_func("g", key_match)
    return enforcer


PolicyLines = tuple[tuple[str, ...], ...]


class PolicyRules:
    """The policy lines read at one revision and casbin's enforcer over them; never changes."""

    def __init__(self, lines: PolicyLines, extra_grouping: list[tuple[str, str, str]]) -> None:
        self.lines = lines
        self._enforcer = _new_enforcer()
        model = self._enforcer.get_model()
        for line in lines:
            persist.load_policy_line(", ".join(line), model)
        for name, role, domain in extra_grouping:
            model.add_policy("g", "g", [user_subject(name), role_subject(role), domain])
        self._enforcer.build_role_links()
        self._decide = threading.Lock()  # casbin's eval (ast.parse) is not thread-safe
        self._tier_decisions: dict[tuple[str, Any], bool] = {}

    def allowed(self, principal: str, domain: str, obj: str, action: str) -> bool:
        """The decision for one request of principal `principal` (deny by default)."""
        with self._decide:
            return bool(self._enforcer.enforce(user_subject(principal), domain, obj, action))

    def explain(self, principal: str, domain: str, obj: str, action: str) -> tuple[bool, list[str]]:
        """The decision for principal `principal` and the policy line that allowed it (empty
        when none did)."""
        with self._decide:
            allowed, rule = self._enforcer.enforce_ex(user_subject(principal), domain, obj, action)
        return bool(allowed), list(rule)

    def tier_allowed(self, tier: str, context: Any) -> bool:
        """Minimum-necessary rule for a tier over a request context (hashable: kept)."""
        key = (tier, context)
        with self._decide:
            found = self._tier_decisions.get(key)
            if found is None:
                enforcer = self._enforcer
                found = bool(enforcer.enforce(enforcer.new_enforce_context("2"), tier, context))
                self._tier_decisions[key] = found
            return found

    def tier_conditions(self, tier: str) -> list[str]:
        """The conditions of the p2 lines of `tier`: any one that holds allows the tier."""
        return [line[2].strip() for line in self.lines if line[0] == "p2" and line[1] == tier]

    def roles_of(self, principal: str) -> list[tuple[str, str]]:
        """(role, domain) pairs held by principal `principal` (role names without namespace)."""
        subject = user_subject(principal)
        return [
            (r[1].removeprefix(ROLE_PREFIX), r[2])
            for r in self._enforcer.get_model().get_policy("g", "g")
            if r[0] == subject
        ]


def read_policy_lines(session: Session) -> PolicyLines:
    """Every stored policy line, `(ptype, values...)`, in the order they were added."""
    rows = session.exec(select(CasbinRule).order_by(col(CasbinRule.id))).all()
    return tuple((rule.ptype, *rule_values(rule)) for rule in rows)


class PolicyEngine:
    """A process's view of the policy: the rules of the latest governance revision it read.

    (A plain class rather than a dataclass: the framework hands dependencies through unchanged.)
    """

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        *,
        refresh_seconds: float = 2.0,
        extra_grouping: list[tuple[str, str, str]] | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.refresh_seconds = refresh_seconds
        self.extra_grouping = extra_grouping or []
        self._rules: PolicyRules | None = None
        self._rules_at: Revision | None = None  # the revision they were read at
        self._checked_at: datetime | None = None
        self._lock = threading.Lock()  # one read of the lines at a time

    def invalidate(self) -> None:
        """Read the lines again before the next decision (after a change made in this process)."""
        with self._lock:
            self._checked_at = None
            self._rules_at = None

    def at(self, revision: Revision | None) -> PolicyRules:
        """The rules in force at `revision`, read after it for the request that asks.

        Blocking when the revision moved since the rules were read (it reads the lines): call it
        in a thread. Lines equal to those held keep the same `PolicyRules` (and the decisions
        it has kept), so a grant or token change costs one read of the lines, not a new
        enforcer. Without a counter (None) the lines are read every time.
        """
        with self._lock:
            current = self._rules
            if current is not None and revision is not None and revision == self._rules_at:
                return current
            with Session(self.engine) as session:
                lines = read_policy_lines(session)
            if current is None or lines != current.lines:
                current = PolicyRules(lines, self.extra_grouping)
            self._rules, self._rules_at = current, revision
            self._checked_at = self.clock.now()
            return current

    def observe(self, session: Session) -> PolicyRules:
        """The rules at the revision read now on `session`, held for the checks that follow.

        Called as an API request is authenticated (in its handler thread, on its session): the
        request's permission checks then see every change committed before it, the same rule as
        the sharing routes'. One read of the counter per request; the lines only when it moved.
        """
        return self.at(read_revision(session.connection()))

    def _stale(self, now: datetime) -> bool:
        checked = self._checked_at
        return checked is None or now - checked >= timedelta(seconds=self.refresh_seconds)

    def current(self) -> PolicyRules:
        """The rules for a check outside the sharing path (the API, commands): the revision is
        read again once `refresh_seconds` have passed (or after `invalidate`).

        While one thread reads the lines, others keep deciding on the rules held; only the
        first call and a call after an invalidation wait.
        """
        current = self._rules
        if current is not None and not self._stale(self.clock.now()):
            return current
        if current is not None and self._checked_at is not None and self._lock.locked():
            return current
        with self.engine.connect() as connection:
            revision = read_revision(connection)
        return self.at(revision)

    def allowed(self, principal: str, domain: str, obj: str, action: str) -> bool:
        """The decision for one request of principal `principal` (deny by default)."""
        return self.current().allowed(principal, domain, obj, action)

    def explain(self, principal: str, domain: str, obj: str, action: str) -> tuple[bool, list[str]]:
        """The decision for principal `principal` and the policy line that allowed it (empty
        when none did)."""
        return self.current().explain(principal, domain, obj, action)

    def tier_allowed(self, tier: str, context: Any) -> bool:
        """Minimum-necessary rule for a tier over a request context."""
        return self.current().tier_allowed(tier, context)

    def tier_conditions(self, tier: str) -> list[str]:
        """The conditions of the p2 lines of `tier` at the current revision."""
        return self.current().tier_conditions(tier)

    def roles_of(self, principal: str) -> list[tuple[str, str]]:
        """(role, domain) pairs held by principal `principal` (role names without namespace)."""
        return self.current().roles_of(principal)


class Caller(Actor):
    """An authenticated API principal; its rights come from the policy engine."""

    def __init__(
        self,
        name: str,
        *,
        policy: PolicyEngine | None = None,
        organization: str | None = None,
        token_id: str | None = None,
    ) -> None:
        super().__init__(name)
        self.policy = policy
        self.organization = organization
        self.token_id = token_id

    def can(self, domain: str, obj: str, action: str) -> bool:
        """Ask the policy engine (no engine: nothing is allowed)."""
        return self.policy is not None and self.policy.allowed(self.name, domain, obj, action)


# --- policy changes (always in the caller's transaction; triggers bump the governance revision)


def add_rule(session: Session, ptype: str, values: list[str], *, now: datetime) -> None:
    """Add one policy line unless it is already there."""
    stored = session.exec(select(CasbinRule).where(CasbinRule.ptype == ptype)).all()
    if any(rule_values(r) == values for r in stored):
        return
    SessionAdapter(session).add_policy(ptype[0], ptype, values)


def remove_rules(session: Session, ptype: str, *values: str, now: datetime) -> None:
    """Remove the policy lines starting with `values`."""
    SessionAdapter(session).remove_filtered_policy(ptype[0], ptype, 0, *values)


def seed_default_policy(session: Session, *, now: datetime) -> bool:
    """Load the shipped default policy into an empty policy table; True when it did."""
    if session.exec(select(CasbinRule).where(CasbinRule.ptype != "g")).first() is not None:
        return False
    adapter = SessionAdapter(session)
    for ptype, *values in default_policy_lines():
        adapter.add_policy(ptype[0], ptype, values)
    return True


# --- the route guard -----------------------------------------------------------------------------

PUBLIC_PATHS = ("/healthz", "/readyz", "/schema")
# The Delta Sharing protocol authenticates recipients (not principals) in its own routes.
RECIPIENT_PATHS = ("/delta-sharing",)


async def permission_guard(connection: Any, handler: Any) -> None:
    """Deny by default: each route declares `opt={"permission": "object:action"}`.

    The domain is the route's `{domain}` path parameter, else `*` (every domain).
    `authenticated` lets any principal through to a service that filters by permission.
    A refusal is recorded in the audit log (`access.denied`, outcome `denied`) by the app's
    refusal hook, like every refusal a service decides.
    """
    if connection.scope["path"].startswith(PUBLIC_PATHS + RECIPIENT_PATHS):  # not .url: cost
        return
    spec = handler.opt.get("permission")
    caller = connection.scope.get("user")  # unset (not an error) when auth was skipped: OPTIONS
    if not isinstance(caller, Actor):
        raise Unauthenticated("authentication required: send Authorization: Bearer <token>")
    if spec == "authenticated":
        return
    try:
        if not isinstance(spec, str) or ":" not in spec:
            raise Forbidden("this route declares no permission, so nobody may call it")
        obj, _, action = spec.partition(":")
        caller.require(connection.path_params.get("domain", "*"), obj, action)
    except Forbidden as exc:
        # Recorded once, with every other refusal, by `catalog.kernel.problems.record_refusal`.
        exc.audit_details["permission"] = str(spec)
        raise


def route_subject(connection: Any) -> str:
    """`METHOD /path`: the subject of an audit entry about a refused request (a secret path
    segment, such as an activation link's, redacted as in log lines)."""
    return redact(f"{connection.scope.get('method', 'GET')} {connection.url.path}")[:300]
