"""age encryption (age-encryption.org/v1) as stream stages, with pyrage.

`pyrage.encrypt_io(reader, writer, recipients)` pushes: it reads a file object and writes
another. The pipeline pulls (the upload reads from the last stage), so each stage runs pyrage
in a thread that writes into an OS pipe and exposes the pipe's other end as a readable
stream. Memory stays flat and nothing touches disk.

Errors: when the upstream stage raises (pg_dump failed, the archive check refused it) inside
pyrage's read, the same exception is raised from this stage's read, before the end of the
stream, so the upload aborts as it would without encryption. What pyrage itself raises is
translated: encryption failures become `EncryptionFailed`, decryption failures
`ArchiveInvalid` — including Rust panics, which pyo3 raises as `PanicException`, a
`BaseException` that `except Exception` misses (the zero point `age1qqqq…5cu47z` makes pyrage
panic). Only KeyboardInterrupt and SystemExit keep their meaning and pass through as they are.

`recipient_problem` proves a recipient before it is stored or used: it encrypts a probe to it.
"""

from __future__ import annotations

import io
import os
import threading
from typing import Any

from clinic_backups.domain.errors import ArchiveInvalid, EncryptionFailed

READ_CHUNK = 1024 * 1024
# What keeps its meaning wherever it is raised: a stop, never a failed backup.
INTERRUPTS = (KeyboardInterrupt, SystemExit)


class _RecordingReader(io.RawIOBase):
    """Passes reads through and remembers the first exception the upstream raised."""

    def __init__(self, source: Any):
        super().__init__()
        self._source = source
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            return self._source.readinto(buffer) or 0
        except BaseException as error:
            self.error = error
            raise


class _PipeStage(io.RawIOBase):
    """Runs `work(reader, writer)` in a thread; reading this stage reads what it wrote."""

    def __init__(self, source: Any, label: str):
        super().__init__()
        self._upstream = _RecordingReader(source)
        read_fd, write_fd = os.pipe()
        self._out = os.fdopen(read_fd, "rb", buffering=0)
        self._writer = os.fdopen(write_fd, "wb", buffering=READ_CHUNK)
        self._error: BaseException | None = None
        self._label = label
        self._thread = threading.Thread(target=self._run, name=f"age-{label}", daemon=True)
        self._started = False

    def work(self, reader: Any, writer: Any) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        try:
            self.work(io.BufferedReader(self._upstream, READ_CHUNK), self._writer)
        except BaseException as error:
            self._error = error
        finally:
            try:
                self._writer.close()
            except OSError:
                pass

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._started:
            self._started = True
            self._thread.start()
        n = self._out.readinto(buffer)
        if n:
            return n
        self._thread.join()
        if self._upstream.error is not None:
            raise self._upstream.error
        if self._error is not None:
            if isinstance(self._error, INTERRUPTS):
                raise self._error
            raise self.translate(self._error) from None
        return 0

    def translate(self, error: BaseException) -> BaseException:
        return error

    def close(self) -> None:
        if not self.closed:
            self._out.close()  # a blocked writer gets EPIPE and the thread ends
            if self._started:
                self._thread.join(timeout=10)
        super().close()


class EncryptStage(_PipeStage):
    """Encrypts the stream to every recipient (`age1…` X25519 public keys)."""

    def __init__(self, source: Any, recipients: list[str]):
        from pyrage import x25519

        if not recipients:
            raise ValueError("at least one recipient is needed")
        try:
            self._recipients = [x25519.Recipient.from_str(r) for r in recipients]
        except INTERRUPTS:
            raise
        except BaseException:  # pyrage's errors and panics alike
            raise EncryptionFailed(
                "a recipient is not an age X25519 public key; nothing was stored"
            ) from None
        super().__init__(source, "encrypt")

    def work(self, reader: Any, writer: Any) -> None:
        import pyrage

        pyrage.encrypt_io(reader, writer, self._recipients)

    def translate(self, error: BaseException) -> BaseException:
        # The panic's text ("Generated the all-zero esk…") helps no clinic: a plain reason.
        return EncryptionFailed(
            "the archive could not be encrypted (a recipient age cannot encrypt to, or the "
            "encryption library failed); nothing was stored"
        )


class DecryptStage(_PipeStage):
    """Decrypts an age stream with any of the identities (`AGE-SECRET-KEY-1…`)."""

    def __init__(self, source: Any, identities: list[str]):
        from pyrage import x25519

        if not identities:
            raise ValueError("at least one identity is needed")
        self._identities = [x25519.Identity.from_str(i) for i in identities]
        super().__init__(source, "decrypt")

    def work(self, reader: Any, writer: Any) -> None:
        import pyrage

        pyrage.decrypt_io(reader, writer, self._identities)

    def translate(self, error: BaseException) -> BaseException:
        # Wrong key, tampered or truncated ciphertext: never the key material in the message.
        return ArchiveInvalid(
            "the encrypted backup could not be decrypted (wrong key, or the "
            "file is damaged or incomplete)"
        )


class AgeCipher:
    """The `Cipher` port with age; pyrage is imported on first use (not at a cold start)."""

    def encrypt(self, source: Any, recipients: list[str]) -> Any:
        return EncryptStage(source, recipients)

    def decrypt(self, source: Any, identities: list[str]) -> Any:
        return DecryptStage(source, identities)

    def recipient_problem(self, public_key: str) -> str | None:
        return recipient_problem(public_key)


def is_public_key(value: str) -> bool:
    """An age X25519 recipient that parses (see `recipient_problem` for one that works)."""
    from pyrage import x25519

    try:
        x25519.Recipient.from_str(value)
    except INTERRUPTS:
        raise
    except BaseException:
        return False
    return value.startswith("age1")


def recipient_problem(value: str) -> str | None:
    """None when age can encrypt to `value`; else why not, in a few words (never the key).

    Parsing is not enough: a point of small order (the all-zero `age1qqqq…5cu47z`, and its
    few siblings) parses, then makes every encryption fail — pyrage panics. So a probe is
    encrypted to it; it costs well under a millisecond."""
    import pyrage
    from pyrage import x25519

    if not value.startswith("age1"):
        return "not an age X25519 public key (age1…)"
    try:
        recipient = x25519.Recipient.from_str(value)
    except INTERRUPTS:
        raise
    except BaseException:
        return "not an age X25519 public key (age1…)"
    try:
        pyrage.encrypt(b"probe", [recipient])
    except INTERRUPTS:
        raise
    except BaseException:
        return "age cannot encrypt to it (a point of small order)"
    return None


def looks_like_private_key(value: str) -> bool:
    return "AGE-SECRET-KEY-" in value.upper()


def public_key_of(identity: str) -> str:
    from pyrage import x25519

    return str(x25519.Identity.from_str(identity).to_public())
