"""The one policy engine: every authorization decision goes through `PolicyEngine`.

Casbin holds the rules (`model.conf`, lines in the `casbin_rule` table). Each process keeps one
enforcer and reloads it when the shared `policy_revision` counter moves, checking at most every
`policy_refresh_seconds`, so a change made by one server process is enforced by the others
within that interval.
"""

import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import casbin
from casbin.util import key_match
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from catalog.audit.context import redact
from catalog.audit.record import Actor
from catalog.kernel.clock import Clock
from catalog.kernel.errors import Forbidden, Unauthenticated
from catalog.serving.blocking import may_block
from policies.adapter import SessionAdapter, rule_values
from policies.models import CasbinRule, PolicyRevision

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


class PolicyEngine:
    """A process's view of the policy, refreshed from the database when it changes.

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
        self._enforcer: casbin.Enforcer | None = None
        self._revision = -1
        self._checked_at: datetime | None = None
        self._lock = threading.Lock()  # one refresh at a time
        self._decide = threading.Lock()  # casbin's eval (ast.parse) is not thread-safe
        self._tier_decisions: dict[tuple[str, Any], bool] = {}

    def invalidate(self) -> None:
        """Reload before the next decision (after a change made in this process)."""
        with self._lock:
            self._checked_at = None
            self._revision = -1

    def _stale(self, now: datetime) -> bool:
        checked = self._checked_at
        return checked is None or now - checked >= timedelta(seconds=self.refresh_seconds)

    def _current(self) -> casbin.Enforcer:
        """The rules in force; a stale copy keeps serving while one thread reloads.

        Only an invalidation (a change made by this process) or the first call waits for the
        reload, so a slow database never queues every request behind the policy check.
        """
        now = self.clock.now()
        current = self._enforcer
        if current is not None and not self._stale(now):
            return current
        may_block()  # the revision check reads the database
        must_wait = current is None or self._checked_at is None
        if not self._lock.acquire(blocking=must_wait):
            return current  # not None: only the first call waits
        try:
            if self._enforcer is not None and not self._stale(now):
                return self._enforcer
            with Session(self.engine) as session:
                row = session.get(PolicyRevision, 1)
                revision = row.revision if row else 0
                if self._enforcer is None or revision != self._revision:
                    enforcer = _new_enforcer()
                    SessionAdapter(session).load_policy(enforcer.get_model())
                    for name, role, domain in self.extra_grouping:
                        enforcer.get_model().add_policy(
                            "g", "g", [user_subject(name), role_subject(role), domain]
                        )
                    enforcer.build_role_links()
                    with self._decide:
                        self._enforcer, self._revision = enforcer, revision
                        self._tier_decisions = {}
            self._checked_at = now
            return self._enforcer
        finally:
            self._lock.release()

    def rules(self) -> object:
        """The rules in force, as an opaque value that changes whenever they are reloaded."""
        return self._current()

    def allowed(self, principal: str, domain: str, obj: str, action: str) -> bool:
        """The decision for one request of principal `principal` (deny by default)."""
        enforcer = self._current()
        with self._decide:
            return bool(enforcer.enforce(user_subject(principal), domain, obj, action))

    def explain(self, principal: str, domain: str, obj: str, action: str) -> tuple[bool, list[str]]:
        """The decision for principal `principal` and the policy line that allowed it (empty
        when none did)."""
        enforcer = self._current()
        with self._decide:
            allowed, rule = enforcer.enforce_ex(user_subject(principal), domain, obj, action)
        return bool(allowed), list(rule)

    def tier_allowed(self, tier: str, context: Any) -> bool:
        """Minimum-necessary rule for a tier over a request context (hashable: cached)."""
        enforcer = self._current()
        key = (tier, context)
        with self._decide:
            if enforcer is not self._enforcer or key not in self._tier_decisions:
                decision = bool(enforcer.enforce(enforcer.new_enforce_context("2"), tier, context))
                if enforcer is self._enforcer:
                    self._tier_decisions[key] = decision
                return decision
            return self._tier_decisions[key]

    def roles_of(self, principal: str) -> list[tuple[str, str]]:
        """(role, domain) pairs held by principal `principal` (role names without namespace)."""
        model = self._current().get_model()
        subject = user_subject(principal)
        return [
            (r[1].removeprefix(ROLE_PREFIX), r[2])
            for r in model.get_policy("g", "g")
            if r[0] == subject
        ]


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


# --- policy changes (always in the caller's transaction, with the revision bumped) --------------


def bump_revision(session: Session, now: datetime) -> None:
    """Tell every process the policy changed."""
    row = session.get(PolicyRevision, 1)
    if row is None:
        session.add(PolicyRevision(id=1, revision=1, changed_at=now))
    else:
        row.revision += 1
        row.changed_at = now
    session.flush()


def add_rule(session: Session, ptype: str, values: list[str], *, now: datetime) -> None:
    """Add one policy line unless it is already there."""
    stored = session.exec(select(CasbinRule).where(CasbinRule.ptype == ptype)).all()
    if any(rule_values(r) == values for r in stored):
        return
    SessionAdapter(session).add_policy(ptype[0], ptype, values)
    bump_revision(session, now)


def remove_rules(session: Session, ptype: str, *values: str, now: datetime) -> None:
    """Remove the policy lines starting with `values`."""
    SessionAdapter(session).remove_filtered_policy(ptype[0], ptype, 0, *values)
    bump_revision(session, now)


def seed_default_policy(session: Session, *, now: datetime) -> bool:
    """Load the shipped default policy into an empty policy table; True when it did."""
    if session.exec(select(CasbinRule).where(CasbinRule.ptype != "g")).first() is not None:
        return False
    adapter = SessionAdapter(session)
    for ptype, *values in default_policy_lines():
        adapter.add_policy(ptype[0], ptype, values)
    bump_revision(session, now)
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
