"""A clinic's own encryption keys: register, list, remove (admins; audited).

Only public keys (`age1…`) are ever accepted or stored. Anything that looks like a private key
(`AGE-SECRET-KEY-…`, in any field of any body: `inputs`) is refused with a clear error, and the
request is never logged, so the secret appears in no table and no log line. Every backup made
while a key is registered is encrypted to it (and always to the platform's restore key), so
the clinic can open its downloads offline with `age -d -i <key file>`.

A key is proven before it is stored: a probe is encrypted to it (`recipient_problem`), so a key
age cannot encrypt to (a point of small order) is a 422 on `public_key`. One stored before that
(or by any other way) fails each backup with a reason naming it (`check_recipients`), and the
keys list marks it (`usable: false`, `problem`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from typing import Any

from clinic_backups.domain.errors import (
    EncryptionFailed,
    FieldProblem,
    KeyNotFound,
    ValidationFailed,
)
from clinic_backups.domain.models import (
    AuditEntry,
    EncryptionKey,
    Permission,
    RegisterKeyRequest,
    TenantContext,
)
from clinic_backups.usecases import context
from clinic_backups.usecases.context import Services

PLATFORM_LABEL = "platform"


def fingerprint(public_key: str) -> str:
    """A short, stable name for a public key (shown beside backups and in the UI)."""
    return "SHA256:" + hashlib.sha256(public_key.encode()).hexdigest()[:16]


def authorize(svc: Services, ctx: TenantContext, action: str) -> None:
    context.authorize(svc, ctx, Permission.MANAGE_KEYS, action)


def list_keys(svc: Services, ctx: TenantContext) -> list[EncryptionKey]:
    """The clinic's keys, each proven again: one age cannot encrypt to is marked."""
    authorize(svc, ctx, "keys.list")
    return [
        dataclasses.replace(key, problem=svc.cipher.recipient_problem(key.public_key))
        for key in svc.keys.list(ctx.schema)
    ]


def register_key(svc: Services, ctx: TenantContext, request: RegisterKeyRequest) -> EncryptionKey:
    authorize(svc, ctx, "keys.register")
    problem = svc.cipher.recipient_problem(request.public_key)
    if problem is not None:
        audit(svc, ctx, "keys.register", "rejected", reason="unusable_key")
        raise ValidationFailed(
            details=[
                FieldProblem("public_key", f"must be an age X25519 public key (age1…): {problem}")
            ]
        )
    key = svc.keys.add(
        ctx.schema,
        EncryptionKey(
            id=uuid.uuid4(),
            label=request.label,
            public_key=request.public_key,
            fingerprint=fingerprint(request.public_key),
            created_by=ctx.user_id,
            created_by_name=ctx.user_name,
            created_at=svc.clock.now(),
        ),
    )
    _audit_key(svc, ctx, "keys.register", "registered", key)
    return key


def remove_key(svc: Services, ctx: TenantContext, raw_id: str) -> None:
    authorize(svc, ctx, "keys.remove")
    try:
        key_id = uuid.UUID(raw_id)
    except ValueError:
        raise KeyNotFound() from None
    removed = svc.keys.remove(ctx.schema, key_id)
    if removed is None:
        raise KeyNotFound()
    _audit_key(svc, ctx, "keys.remove", "removed", removed)


def audit(svc: Services, ctx: TenantContext, action: str, outcome: str, **details: Any) -> None:
    svc.records.audit(ctx.schema, AuditEntry.by(ctx, action, outcome, **details))


def _audit_key(
    svc: Services, ctx: TenantContext, action: str, outcome: str, key: EncryptionKey
) -> None:
    # Public facts only: the id, label and fingerprint, never key material.
    svc.records.audit(
        ctx.schema,
        AuditEntry.by(
            ctx, action, outcome, key_id=str(key.id), label=key.label, fingerprint=key.fingerprint
        ),
    )


def recipients_for(svc: Services, schema: str) -> list[dict[str, str]]:
    """Everyone a new backup of the clinic is encrypted to: the platform's current restore
    recipient, then every key the clinic registered (public keys only)."""
    platform = svc.config.platform_recipients[0]
    recipients = [
        {
            "kind": "platform",
            "public_key": platform,
            "label": PLATFORM_LABEL,
            "fingerprint": fingerprint(platform),
        }
    ]
    recipients += [
        {
            "kind": "clinic",
            "public_key": k.public_key,
            "label": k.label,
            "fingerprint": k.fingerprint,
            "key_id": str(k.id),
        }
        for k in svc.keys.list(schema)
    ]
    return recipients


def check_recipients(svc: Services, recipients: list[dict[str, str]]) -> None:
    """Refuse to encrypt a backup to a key age cannot encrypt to, naming the key (its label
    and fingerprint: the clinic finds it in the keys panel), before pg_dump even starts."""
    for recipient in recipients:
        problem = svc.cipher.recipient_problem(recipient["public_key"])
        if problem is None:
            continue
        whose = (
            "the platform's restore key"
            if recipient["kind"] == "platform"
            else f"the clinic's encryption key «{recipient['label']}»"
        )
        raise EncryptionFailed(
            f"{whose} ({recipient['fingerprint']}) cannot be used: {problem}. Remove it and "
            "register a valid key; no backup was stored"
        )
