"""The audit trail: one append-only, hash-chained store of every change, read and refusal.

`catalog.audit.record.record` / `record_failure` write it; `context` carries the request id,
client address and user agent of the request being served; `chain` keeps the hash chain and
verifies it; `service`, `routes` and `commands` query it (auditors and platform admins only).
"""
