"""Stream stages that are plain Python: what the pipelines put between a producer and its
consumer to know exactly what passed."""

from __future__ import annotations

import hashlib
import io


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
