"""In-memory fakes of the ports the use cases use, and `fake_services`: the one place tests
build a `Services` from them (the use-case tests in tests/usecases run on these, in seconds,
with no PostgreSQL, S3 or moto). Each fake is typed against its port below, so mypy checks
that it still fits when a port changes."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from clinic_backups.adapters.age import AgeCipher
from clinic_backups.domain.models import Clinic, Permission, Role, TenantContext
from clinic_backups.usecases.context import Config, Services
from pyrage import x25519

from tests.fakes.clock import FakeClock
from tests.fakes.others import FakeDispatcher, FakeDumper, FakeKeys, FakeMetrics, FakeSchedules
from tests.fakes.records import FakeRecords, FakeTenants
from tests.fakes.restores import FakeRestorer, FakeRestores, FakeVerifier
from tests.fakes.storage import FakeReplica, FakeStorage

CLINIC = "clinica_norte"
OTHER_CLINIC = "clinica_sur"

ADMIN_PERMISSIONS = frozenset(Permission)
STAFF_PERMISSIONS = frozenset({Permission.LIST, Permission.CREATE})

PLATFORM_IDENTITY = x25519.Identity.generate()
PLATFORM_RECIPIENT = str(PLATFORM_IDENTITY.to_public())


def caller(
    role: Role = Role.ADMIN,
    schema: str = CLINIC,
    user_id: str = "u-admin",
    permissions: frozenset[Permission] | None = None,
) -> TenantContext:
    """A verified caller: an admin (every permission) or staff (list and create)."""
    if permissions is None:
        permissions = ADMIN_PERMISSIONS if role == Role.ADMIN else STAFF_PERMISSIONS
    return TenantContext(
        schema=schema,
        clinic_name="Clínica " + schema,
        user_id=user_id,
        user_name=user_id.upper(),
        role=role,
        permissions=permissions,
        request_id="req-1",
    )


@dataclass
class Fakes:
    """The fakes behind one `Services`, for a test to arrange and inspect."""

    svc: Services
    clock: FakeClock
    records: FakeRecords
    tenants: FakeTenants
    storage: FakeStorage
    dispatcher: FakeDispatcher
    dumper: FakeDumper
    keys: FakeKeys
    schedules: FakeSchedules
    metrics: FakeMetrics
    restores: FakeRestores
    restorer: FakeRestorer
    verifier: FakeVerifier
    replica: FakeReplica | None = None

    def reconfigure(self, **changes: Any) -> None:
        """A new `Services` with some fields changed (a rotated key, a lower quota…): never
        a change to the one the use cases already hold. A `Config` value's name changes the
        config, any other name a port."""
        self.svc = changed(self.svc, changes)


CONFIG_FIELDS = frozenset(f.name for f in fields(Config))


def changed(svc: Services, changes: dict[str, Any]) -> Services:
    """`svc` with ports and `Config` values replaced by name."""
    config = {k: v for k, v in changes.items() if k in CONFIG_FIELDS}
    ports = {k: v for k, v in changes.items() if k not in CONFIG_FIELDS}
    return replace(svc, config=replace(svc.config, **config), **ports)


def fake_services(*, with_replica: bool = False, **overrides: Any) -> Fakes:
    """Every fake wired into one `Services` (the only place a test builds one); `overrides`
    are `Services` fields (configuration values, or a port replaced or set to None)."""
    clock = FakeClock()
    records = FakeRecords(clock)
    tenants = FakeTenants(Clinic(CLINIC, "Clínica Norte", True), Clinic(OTHER_CLINIC, "Sur", True))
    storage = FakeStorage(clock)
    dispatcher = FakeDispatcher()
    dumper = FakeDumper()
    keys = FakeKeys()
    schedules = FakeSchedules(records, clock)
    metrics = FakeMetrics()
    restores = FakeRestores(records)
    restorer = FakeRestorer(restores)
    verifier = FakeVerifier()
    replica = FakeReplica(clock) if with_replica else None
    # Each fake passed as its port: mypy refuses a fake that no longer fits its port.
    svc = Services(
        records=records,
        tenants=tenants,
        storage=storage,
        dispatcher=dispatcher,
        dumper=dumper,
        keys=keys,
        schedules=schedules,
        clock=clock,
        metrics=metrics,
        restores=restores,
        restorer=restorer,
        verifier=verifier,
        replica=replica,
        cipher=AgeCipher(),  # in-process (pyrage): the real cipher, no service behind it
        config=Config(
            platform_recipients=[PLATFORM_RECIPIENT],
            platform_identities=[str(PLATFORM_IDENTITY)],
        ),
    )
    svc = changed(svc, overrides)
    return Fakes(
        svc=svc,
        clock=clock,
        records=records,
        tenants=tenants,
        storage=storage,
        dispatcher=dispatcher,
        dumper=dumper,
        keys=keys,
        schedules=schedules,
        metrics=metrics,
        restores=restores,
        restorer=restorer,
        verifier=verifier,
        replica=replica,
    )
