"""The session's invariant scanner (tests/invariants.py) can fail: a plaintext object, a
manifest that is not JSON or holds a secret, a part that is not ciphertext — each is a
finding, and a report with findings fails."""

from __future__ import annotations

import json

import pytest

from tests import invariants

CIPHERTEXT = invariants.AGE_HEADER + b"\n-> X25519 abc\n---\x00\x01binary"


def scan(objects: dict[str, bytes]) -> invariants.Report:
    def read(key: str, limit: int | None) -> bytes:
        return objects[key][:limit] if limit else objects[key]

    return invariants.scan_objects("mem://test", list(objects), read)


def manifest(**fields: object) -> bytes:
    return json.dumps({"manifest_version": 1, "schema": "clinica_x", **fields}).encode()


def test_an_encrypted_archive_and_its_manifest_pass():
    report = scan({"c/a.dump.age": CIPHERTEXT, "c/a.dump.age.manifest.json": manifest(note="ok")})
    assert report.findings == []
    assert (report.objects, report.archives, report.manifests) == (2, 1, 1)
    report.check()


@pytest.mark.parametrize(
    "data,what",
    [
        (b"PGDMP\x01\x0e\x00", "plaintext pg_dump archive"),
        (b"who made me?", "plaintext"),
        (b"", "plaintext"),
        (b'{"schema": "clinica_x"}', "plaintext"),  # JSON, but not under a manifest's name
        (b"age-encryption.org/v2\n", "plaintext"),
    ],
)
def test_a_plaintext_object_is_a_finding_and_fails_the_run(data, what):
    report = scan({"c/a.dump.age": data})
    assert len(report.findings) == 1 and what in report.findings[0]
    with pytest.raises(AssertionError, match="invariant broken"):
        report.check()


@pytest.mark.parametrize(
    "data,what",
    [
        (b"PGDMP not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (manifest(note="AGE-SECRET-KEY-1QQQQ"), "AGE-SECRET-KEY"),
        (manifest(note="age-secret-key-1qqqq"), "AGE-SECRET-KEY"),
        (manifest(db="postgresql://backup:hunter22@db/clinics"), "postgres"),
    ],
)
def test_a_manifest_that_is_not_json_or_holds_a_secret_is_a_finding(data, what):
    report = scan({"c/a.dump.age": CIPHERTEXT, "c/a.dump.age.manifest.json": data})
    assert len(report.findings) == 1 and what in report.findings[0], report.findings


def test_a_session_secret_is_a_finding_wherever_it_appears():
    invariants.register_secret("s3-secret-of-this-session-1234")
    report = scan(
        {
            "c/a.dump.age": CIPHERTEXT,
            "c/a.dump.age.manifest.json": manifest(note="s3-secret-of-this-session-1234"),
        }
    )
    invariants._session_secrets.discard("s3-secret-of-this-session-1234")
    assert len(report.findings) == 1 and "session secret" in report.findings[0]
    assert "s3-secret-of-this-session-1234" not in report.findings[0]


def test_a_split_archive_is_read_through_its_manifest():
    parts = ["c/a.dump.age.part001", "c/a.dump.age.part002", "c/a.dump.age.part003"]
    good = {
        parts[0]: CIPHERTEXT,
        parts[1]: b"\x8f\x11ciphertext goes on",
        parts[2]: b"\x00\x02and ends",
        "c/a.dump.age.manifest.json": manifest(parts=[{"key": k} for k in parts]),
    }
    report = scan(good)
    assert report.findings == [] and (report.archives, report.parts) == (1, 2)

    # the first part must begin with the header; no part may be a plaintext archive …
    assert scan({**good, parts[0]: b"PGDMP..."}).findings
    assert scan({**good, parts[2]: b"PGDMP..."}).findings
    # … a part nobody lists is an object like any other, and a listed part must exist
    stray = scan({**good, "c/a.dump.age.part004": b"\x8fcontinued"})
    assert [f for f in stray.findings if "part004" in f]
    missing = {k: v for k, v in good.items() if k != parts[1]}
    assert [f for f in scan(missing).findings if "missing" in f]
