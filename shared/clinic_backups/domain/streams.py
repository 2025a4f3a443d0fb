"""Stream stages that are plain Python: what the pipelines put between a producer and its
consumer to know exactly what passed."""

from __future__ import annotations

import hashlib
import io
from functools import partial

# `read()` without a size reads to the end in steps of this many bytes.
READ_ALL_STEP = 1024 * 1024


class HashingReader(io.RawIOBase):
    """sha256 and byte count of everything read through it."""

    def __init__(self, source: io.RawIOBase):
        super().__init__()
        self._source = source
        self._hash = hashlib.sha256()
        self.size = 0
        self.at_eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = self._source.readinto(buffer)
        if n:
            view = memoryview(buffer)[:n]
            self._hash.update(view)
            self.size += n
        else:
            self.at_eof = True
        return n or 0

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class ChunkReader(io.RawIOBase):
    """A readable stream built on `read_chunk(size)`: up to `size` bytes as the source gave
    them, b"" at the end. `read()` without a size reads to the end; `readinto` copies a chunk."""

    def readable(self) -> bool:
        return True

    def read_chunk(self, size: int) -> bytes:
        raise NotImplementedError

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(partial(self.read_chunk, READ_ALL_STEP), b""))
        return self.read_chunk(size)

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer)
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)
