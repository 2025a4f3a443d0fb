"""Pure logic of split archives (issue 19): where a stream is cut, the part names, the parts
read back as one stream, and the refusal when splitting is off. The store here is a dict
that reads each upload the way s3transfer does (a first read of the threshold, then a read of
the rest or chunk after chunk); the real stores are in tests/integration/test_split_archives."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import BinaryIO

import pytest
from clinic_backups.domain import parts
from clinic_backups.domain.errors import ForeignKeyPrefix, StorageObjectTooLarge
from clinic_backups.domain.models import BackupRecord, BackupStatus, Trigger
from clinic_backups.domain.names import archive_key, key_stem
from clinic_backups.domain.ports import ObjectInfo
from clinic_backups.domain.storage import ScopedStorage

SCHEMA = "clinica_demo"
KEY = f"{SCHEMA}/2026/12/{SCHEMA}-20261203T000000Z-0123abcd.dump.age"


class DictStore:
    """Objects in a dict; uploads read like s3transfer reads a non-seekable stream."""

    def __init__(self, chunk: int = 64) -> None:
        self.objects: dict[str, bytes] = {}
        self.chunk = chunk

    def upload_stream(self, key: str, stream: BinaryIO, content_type: str) -> None:
        first = stream.read(self.chunk)
        if len(first) < self.chunk:
            self.objects[key] = first + stream.read()
            return
        pieces = [first]
        while piece := stream.read(self.chunk):
            pieces.append(piece)
        self.objects[key] = b"".join(pieces)

    def copy(self, source: str, target: str) -> None:
        self.objects[target] = self.objects[source]

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self.objects.pop(key, None)

    def open_read(self, key: str) -> BinaryIO:
        return io.BytesIO(self.objects[key])

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        for key in sorted(self.objects):
            if key.startswith(prefix):
                yield ObjectInfo(key=key, size=len(self.objects[key]))


def store_and_upload(data: bytes, limit: int | None, *, split: bool = True, chunk: int = 64):
    store = DictStore(chunk)
    scoped = ScopedStorage(store, SCHEMA)  # type: ignore[arg-type]
    stored = parts.upload_archive(
        scoped, KEY, io.BytesIO(data), "application/octet-stream", limit=limit, split=split
    )
    return store, scoped, stored


def record(stored: list[dict] | None) -> BackupRecord:
    return BackupRecord(
        id=uuid.uuid4(),
        status=BackupStatus.COMPLETED,
        trigger=Trigger.MANUAL,
        file_name=KEY.rsplit("/", 1)[1],
        storage_key=KEY,
        created_by="u",
        created_at=datetime.now(UTC),
        compression="zstd:3",
        parts=stored,
    )


@pytest.mark.parametrize("size", [0, 1, 99, 100])
def test_a_stream_within_the_limit_stays_one_object_under_its_usual_key(size):
    data = os.urandom(size)
    store, _, stored = store_and_upload(data, limit=100)
    assert stored is None
    assert store.objects == {KEY: data}


@pytest.mark.parametrize(
    ("size", "sizes"),
    [(101, [100, 1]), (200, [100, 100]), (201, [100, 100, 1]), (250, [100, 100, 50])],
)
@pytest.mark.parametrize("chunk", [7, 64, 1000])
def test_a_longer_stream_becomes_numbered_parts_of_at_most_the_limit(size, sizes, chunk):
    data = os.urandom(size)
    store, scoped, stored = store_and_upload(data, limit=100, chunk=chunk)
    assert stored is not None
    names = [f"{KEY}.part{n:03d}" for n in range(1, len(sizes) + 1)]
    assert [p["key"] for p in stored] == names
    assert sorted(store.objects) == names  # the unsplit key is gone
    assert [p["size_bytes"] for p in stored] == sizes
    for part in stored:
        body = store.objects[part["key"]]
        assert hashlib.sha256(body).hexdigest() == part["sha256"]
    assert b"".join(store.objects[n] for n in names) == data
    # read back as one stream, whatever the read sizes
    with parts.open_stored(scoped, record(stored)) as joined:
        assert joined.read() == data
    # and every object of it is found again for deletion
    assert sorted(parts.leftover_keys(scoped, KEY)) == sorted([KEY, KEY + ".manifest.json", *names])
    assert parts.stored_keys(record(stored)) == [*names, KEY + ".manifest.json"]


def test_with_splitting_off_a_longer_stream_is_refused_naming_the_limit_and_the_fix():
    with pytest.raises(StorageObjectTooLarge) as refused:
        store_and_upload(os.urandom(101), limit=100, split=False)
    assert "0.0 MB (100 bytes)" in refused.value.message
    assert "STORAGE_SPLIT_ARCHIVES" in refused.value.message
    assert "file_size_limit" in refused.value.message
    store, _, stored = store_and_upload(os.urandom(100), limit=100, split=False)
    assert stored is None and list(store.objects) == [KEY]


def test_more_parts_than_names_allow_is_refused(monkeypatch):
    monkeypatch.setattr(parts, "MAX_PARTS", 3)
    _, _, stored = store_and_upload(os.urandom(300), limit=100)
    assert stored is not None and len(stored) == 3
    with pytest.raises(StorageObjectTooLarge, match="more than 3 parts"):
        store_and_upload(os.urandom(301), limit=100)


def test_a_part_key_outside_the_clinic_is_never_read():
    stored = [{"key": "otra_clinica/x.part001", "size_bytes": 1, "sha256": "0" * 64}]
    with pytest.raises(ForeignKeyPrefix):
        parts.open_stored(ScopedStorage(DictStore(), SCHEMA), record(stored))  # type: ignore[arg-type]


def test_the_smallest_known_limit_counts():
    assert parts.effective_limit([None, None]) is None
    assert parts.effective_limit([83_886_080_000, None]) == 83_886_080_000
    assert parts.effective_limit([83_886_080_000, 50_000_000, 0]) == 50_000_000


def test_part_keys_share_the_backups_stem_and_lead_back_to_its_key():
    part = parts.part_key(KEY, 7)
    assert part.endswith(".dump.age.part007")
    assert key_stem(part) == key_stem(KEY)
    assert archive_key(part) == KEY and archive_key(KEY) == KEY
    with pytest.raises(ValueError):
        parts.part_key(KEY, 1000)


def test_every_function_reads_storage_max_object_mb_empty_as_unset():
    # The template passes "" when the parameter is left empty: every function's settings
    # read it as unset (the field's own type says so: no validator a subclass could shadow).
    from typing import Annotated

    from clinic_backups.wiring import settings
    from pydantic import TypeAdapter

    models: list[type[settings.StorageSettings]] = [
        m
        for m in vars(settings).values()
        if isinstance(m, type) and issubclass(m, settings.StorageSettings)
    ]
    assert settings.RestoreSettings in models
    for model in models:
        field = model.model_fields["storage_max_object_mb"]
        read: TypeAdapter[int | None] = TypeAdapter(
            Annotated[field.annotation, *field.metadata]  # type: ignore[name-defined]
        )
        assert read.validate_python("") is None, model.__name__
        assert read.validate_python("50") == 50, model.__name__
