"""An audit entry's fields are declared once (AuditEntry): the table, the hashed fields and the
read shape follow it."""

import dataclasses

from catalog.audit.chain import HASHED_FIELDS
from catalog.audit.models import AuditEntry, AuditEvent, AuditEventRead


def test_the_table_the_hash_and_the_read_shape_have_the_entrys_fields() -> None:
    declared = [f.name for f in dataclasses.fields(AuditEntry)]
    assert sorted(AuditEvent.model_fields) == sorted(declared)
    assert sorted(AuditEventRead.model_fields) == sorted(declared)
    assert set(HASHED_FIELDS) == set(declared) - {"prev_hash", "hash"}
