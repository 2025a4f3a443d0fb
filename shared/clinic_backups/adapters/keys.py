"""The clinic's registered encryption keys (public keys only), in its own schema."""

from __future__ import annotations

import uuid

import psycopg2.errors
from psycopg2 import sql

from clinic_backups.adapters.database import (
    Database,
    clinic_table,
)
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
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL("SELECT * FROM {} ORDER BY created_at, id").format(
                    clinic_table(schema, "backup_keys")
                )
            )
            return [_key(r) for r in cur.fetchall()]

    def add(self, schema: str, key: EncryptionKey) -> EncryptionKey:
        try:
            with self._db.transaction() as cur:
                cur.execute(
                    sql.SQL("INSERT INTO {t} ({cols}) VALUES ({vals}) RETURNING *").format(
                        t=clinic_table(schema, "backup_keys"),
                        cols=sql.SQL(", ").join(sql.Identifier(c) for c in _COLUMNS),
                        vals=sql.SQL(", ").join(sql.Placeholder() for _ in _COLUMNS),
                    ),
                    [getattr(key, c) for c in _COLUMNS],
                )
                return _key(cur.fetchone())
        except psycopg2.errors.UniqueViolation:
            raise KeyAlreadyRegistered() from None

    def remove(self, schema: str, key_id: uuid.UUID) -> EncryptionKey | None:
        with self._db.transaction() as cur:
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE id = %s RETURNING *").format(
                    clinic_table(schema, "backup_keys")
                ),
                (key_id,),
            )
            row = cur.fetchone()
            return _key(row) if row else None
