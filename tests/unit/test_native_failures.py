"""What pyrage (Rust, through pyo3) raises is not always an `Exception`: a panic is
`pyo3_runtime.PanicException`, a `BaseException`. None of it may wedge a backup or kill a
worker: the age stage turns it into a failed backup, a queue worker survives any job, and an
interrupt still stops what it should.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest

ZERO_POINT = "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq5cu47z"


def real_panic() -> BaseException:
    """The exception pyrage really raises for the zero point (not a stand-in)."""
    import pyrage
    from pyrage import x25519

    try:
        pyrage.encrypt(b"x", [x25519.Recipient.from_str(ZERO_POINT)])
    except BaseException as error:
        return error
    raise AssertionError("pyrage encrypted to the zero point")


def test_pyrage_panics_are_base_exceptions_not_exceptions():
    panic = real_panic()
    assert not isinstance(panic, Exception)
    assert type(panic).__name__ == "PanicException"


def test_the_probe_refuses_low_order_keys_and_accepts_real_ones():
    from clinic_backups.adapters.age import recipient_problem
    from pyrage import x25519

    assert recipient_problem(str(x25519.Identity.generate().to_public())) is None
    assert "cannot encrypt to it" in (recipient_problem(ZERO_POINT) or "")
    assert recipient_problem("age1notakey") is not None
    assert recipient_problem("AGE-SECRET-KEY-1" + "Q" * 58) is not None


def test_the_encrypt_stage_turns_a_panic_into_a_failed_backup():
    from clinic_backups.adapters.age import EncryptStage
    from clinic_backups.domain.errors import BackupRunError

    stage = EncryptStage(io.BytesIO(b"PGDMP" + b"x" * 1000), [ZERO_POINT])
    with pytest.raises(BackupRunError) as caught:
        while stage.read(4096):
            pass
    stage.close()
    assert caught.value.error_code == "encryption_failed"
    assert "Panic" not in caught.value.message


def test_an_interrupt_from_upstream_still_interrupts():
    """KeyboardInterrupt / SystemExit keep their meaning: they are not a failed backup."""
    from clinic_backups.adapters.age import EncryptStage
    from pyrage import x25519

    class Interrupting(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer):  # type: ignore[no-untyped-def]
            raise KeyboardInterrupt

    stage = EncryptStage(Interrupting(), [str(x25519.Identity.generate().to_public())])
    with pytest.raises(KeyboardInterrupt):
        while stage.read(4096):
            pass
    stage.close()


def test_a_local_queue_worker_survives_a_job_that_panics():
    from devstack.local_queue import LocalQueue

    queue = LocalQueue(workers=1)
    seen: list[str] = []

    def consumer(message: dict) -> None:
        if message["n"] == 1:
            raise real_panic()
        seen.append(threading.current_thread().name)

    queue.start(consumer)
    try:
        queue.put({"n": 1})
        queue.put({"n": 2})
        assert queue.join(timeout=10)
        assert len(seen) == 1 and all(t.is_alive() for t in queue._threads)
    finally:
        queue.stop()


def test_the_local_gateways_function_container_reports_a_panic_as_a_function_error(
    tmp_path: Path,
):
    """As Lambda does: the invocation fails (the SQS message is retried, then dead-lettered),
    and the container and the queue thread that called it live on."""
    from devstack.gateway import _Container
    from devstack.template import Function

    code = tmp_path / "fn"
    code.mkdir()
    (code / "app.py").write_text(
        "import pyrage\n"
        "from pyrage import x25519\n"
        "def lambda_handler(event, context):\n"
        "    if event.get('panic'):\n"
        f"        pyrage.encrypt(b'x', [x25519.Recipient.from_str({ZERO_POINT!r})])\n"
        "    return {'ok': True}\n"
    )
    fn = Function(
        logical_id="Panicky",
        folder="panicky",
        code_dir=code,
        handler="app.lambda_handler",
        timeout=30,
        memory=128,
        environment={},
        unresolved_environment=(),
        schedule_rules=(),
        sqs_events=(),
    )
    container = _Container(fn)
    try:
        failed = container.executor.submit(container.run, {"panic": True}).result(timeout=30)
        assert failed.error is not None and failed.lambda_error()["errorType"] == "PanicException"
        fine = container.executor.submit(container.run, {}).result(timeout=30)
        assert fine.error is None and fine.payload == {"ok": True}
    finally:
        container.executor.shutdown(wait=True)
