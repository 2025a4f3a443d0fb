"""The clinic's registered encryption keys (public keys only), in its own schema."""

from __future__ import annotations

import uuid

import psycopg2.errors

from clinic_backups.adapters.database import Database, column_lists
from clinic_backups.domain.errors import KeyAlreadyRegistered
from clinic_backups.domain.models import EncryptionKey

_COLUMNS = (
    "id",
    "label",
    "public_key",
    "fingerprint",
    "created_by",
    "created_by_name",
    "created_at",
)


def _key(row: dict) -> EncryptionKey:
    return EncryptionKey(**{c: row[c] for c in _COLUMNS})


class PostgresKeys:
    """The `KeysRepository` port on PostgreSQL (`backup_keys`)."""

    def __init__(self, db: Database):
        self._db = db

    def list(self, schema: str) -> list[EncryptionKey]:
        with self._db.clinic(schema) as tx:
            return [_key(r) for r in tx.all("SELECT * FROM {keys} ORDER BY created_at, id")]

    def add(self, schema: str, key: EncryptionKey) -> EncryptionKey:
        try:
            with self._db.clinic(schema) as tx:
                added = tx.one(
                    "INSERT INTO {keys} ({cols}) VALUES ({vals}) RETURNING *",
                    [getattr(key, c) for c in _COLUMNS],
                    **column_lists(_COLUMNS),
                )
                return _key(added)
        except psycopg2.errors.UniqueViolation:
            raise KeyAlreadyRegistered() from None

    def remove(self, schema: str, key_id: uuid.UUID) -> EncryptionKey | None:
        with self._db.clinic(schema) as tx:
            row = tx.one("DELETE FROM {keys} WHERE id = %s RETURNING *", (key_id,))
            return _key(row) if row else None
