"""The access snapshot: what the sharing rules need about one recipient token, per revision.

Every sharing request re-checks, in order: the bearer token (valid, unexpired, unrevoked), the
recipient's network allow-list, and its live grants (readable, DUA in force, the
minimum-necessary policy still allowing the tier). The rows those checks read and the policy
lines change rarely, and every change bumps the governance revision in the changing transaction
(`policies/revision.py`). So a request:

1. reads the revision, after it arrived (`RevisionReader`: no handler thread);
2. looks up the snapshot of (its token, that revision) in memory, without I/O
   (`AccessSnapshots.lookup`), and only on a miss loads it in a handler thread
   (`AccessSnapshots.load`: the token, its organisation and allow-list, the organisation's
   grants with their DUAs and served versions, the policy rules at that revision);
3. checks every rule against the snapshot at its own time, on the event loop.

A change committed before a request arrived is seen by that request: its revision is newer than
any snapshot kept. The parts of the rules that depend on time (token expiry, grant expiry and
review, DUA dates, a deprecated version's end of service) are evaluated at every request, so a
snapshot never serves a revoked or expired token. The rows are read after the revision, so a
snapshot is never older than the revision it is kept under.

The snapshots live on the app (`app.state.access`), one generation per revision: a newer
revision starts a new generation, an older one (a request that read it just before a change) is
loaded but not kept.
"""

import threading
from dataclasses import dataclass, field
from datetime import datetime

from litestar.concurrency import sync_to_thread
from sqlalchemy.engine import Engine
from sqlmodel import Session

from catalog.kernel.db import saved_id
from catalog.kernel.settings import Settings
from policies.enforcer import PolicyEngine, PolicyRules
from policies.principals.models import Organization
from policies.revision import Revision, RevisionReader
from sharing.reads import GrantFacts, SharedTable, grant_facts, tables_of
from sharing.recipients.service import Recipient, TokenRow, token_row, verify

MAX_ENTRIES = 20_000  # snapshots per generation: a flood of unknown token ids starts a new one


@dataclass(frozen=True)
class AccessSnapshot:
    """What one token's requests rest on at one governance revision (read-only once made)."""

    token_id: str
    revision: Revision | None
    token: TokenRow | None  # the token, its organisation and allow-list; None: no such token
    grants: GrantFacts | None  # the organisation's unrevoked grants; None without a token
    rules: PolicyRules

    def recipient(self, secret: str, now: datetime) -> Recipient:
        """The recipient, if `secret` is the token's and it is live at `now`; else
        Unauthenticated."""
        return verify(self.token, secret, now=now)

    def tables(self, organization: Organization, now: datetime) -> list[SharedTable]:
        """The tables the organisation may read at `now` (no I/O)."""
        if self.grants is None:
            return []
        return tables_of(self.grants, organization, rules=self.rules, now=now)


@dataclass
class _Generation:
    """The snapshots kept for one revision, and the grants they share by organisation."""

    revision: Revision | None
    by_token: dict[str, AccessSnapshot] = field(default_factory=dict)
    by_organization: dict[int, GrantFacts] = field(default_factory=dict)


class AccessSnapshots:
    """The access snapshots of a process: looked up without I/O, loaded on a miss."""

    def __init__(
        self,
        engine: Engine,
        policy: PolicyEngine,
        settings: Settings,
        *,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self._engine, self._policy, self._settings = engine, policy, settings
        self._max_entries = max_entries
        self._lock = threading.Lock()
        self._kept = _Generation(None)

    def lookup(self, token_id: str, revision: Revision | None) -> AccessSnapshot | None:
        """The snapshot kept for `token_id` at `revision`, or None. No I/O, no lock."""
        kept = self._kept  # one read: the generation and its entries belong together
        if revision is None or kept.revision != revision:
            return None
        return kept.by_token.get(token_id)

    def load(self, token_id: str, revision: Revision | None) -> AccessSnapshot:
        """Read the snapshot from the database and keep it (blocking: call it in a thread).

        `revision` must have been read before this call, so the rows are at least as new.
        """
        rules = self._policy.at(revision)
        with Session(self._engine) as session:
            found = token_row(session, token_id)
            grants = None
            if found is not None:
                organization_id = saved_id(found[1].id)
                kept = self._kept
                grants = (
                    kept.by_organization.get(organization_id) if kept.revision == revision else None
                )
                if grants is None or revision is None:
                    grants = grant_facts(session, organization_id, self._settings)
        snapshot = AccessSnapshot(token_id, revision, found, grants, rules)
        self._keep(snapshot)
        return snapshot

    async def get(self, token_id: str, revision: Revision | None) -> AccessSnapshot:
        """The kept snapshot, else loaded in a handler thread."""
        found = self.lookup(token_id, revision)
        if found is not None:
            return found
        return await sync_to_thread(self.load, token_id, revision)

    def _keep(self, snapshot: AccessSnapshot) -> None:
        revision = snapshot.revision
        if revision is None:
            return  # no counter: nothing may be kept
        with self._lock:
            kept = self._kept
            if kept.revision != revision:
                if kept.revision is not None and revision[0] < kept.revision[0]:
                    return  # read under an older revision than the one kept: do not regress
                # The same counter with another stamp (a restored database) replaces them all.
                kept = _Generation(revision)
            elif len(kept.by_token) >= self._max_entries:
                kept = _Generation(revision)
            # Entries are added in place: a lookup's `dict.get` is atomic and never iterates.
            kept.by_token[snapshot.token_id] = snapshot
            if snapshot.token is not None and snapshot.grants is not None:
                kept.by_organization[saved_id(snapshot.token[1].id)] = snapshot.grants
            self._kept = kept


class Access:
    """The sharing routes' way to a token's snapshot at the revision read for the request."""

    def __init__(self, engine: Engine, policy: PolicyEngine, settings: Settings) -> None:
        self.revisions = RevisionReader(engine)
        self.snapshots = AccessSnapshots(engine, policy, settings)

    async def snapshot(self, token_id: str) -> AccessSnapshot:
        """The snapshot of `token_id` at the revision now (read after the caller asked)."""
        return await self.snapshots.get(token_id, await self.revisions.read())
