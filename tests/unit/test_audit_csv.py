"""One audit entry as a row of the activity export: the same text the API shows, and no
cell a spreadsheet would run as a formula."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from clinic_backups.domain.models import AuditRecord
from clinic_backups.usecases.activity import CSV_COLUMNS, csv_row


def test_an_audit_row_has_iso_times_canonical_ids_json_details_and_no_formula():
    entry = AuditRecord(
        id=uuid.UUID(int=1),
        at=datetime(2026, 12, 3, 23, 0, 5, 123000, tzinfo=UTC),
        action="backup.download",
        outcome="signed",
        actor_id="u-1",
        actor_name='=HYPERLINK("x")',
        actor_role="admin",
        request_id=None,
        backup_id=uuid.UUID(int=2),
        details={"ttl_seconds": 300, "nota": "año"},
    )
    assert dict(zip(CSV_COLUMNS, csv_row(entry), strict=True)) == {
        "at": "2026-12-03T23:00:05.123000+00:00",
        "action": "backup.download",
        "outcome": "signed",
        "actor_id": "u-1",
        "actor_name": '\'=HYPERLINK("x")',
        "actor_role": "admin",
        "backup_id": "00000000-0000-0000-0000-000000000002",
        "request_id": "",
        "details": '{"nota": "año", "ttl_seconds": 300}',
    }
