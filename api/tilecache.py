"""In-process LRU cache of gzipped tiles keyed by (what, role, z, x, y, layer versions).

Any write to a layer bumps its version (database trigger), so a key with the new version misses
and a stale tile is never served; old entries age out of the LRU.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict


class TileCache:
    def __init__(self, max_bytes: int = 256 * 1024 * 1024):
        self.max_bytes = max_bytes
        self._data: OrderedDict[tuple, tuple[bytes, str, tuple]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    @staticmethod
    def etag(key: tuple) -> str:
        return '"' + hashlib.sha1(repr(key).encode()).hexdigest()[:20] + '"'

    def get(self, key: tuple):
        with self._lock:
            hit = self._data.get(key)
            if hit is not None:
                self._data.move_to_end(key)
            return hit

    def put(self, key: tuple, body: bytes, truncated: tuple) -> tuple[bytes, str, tuple]:
        entry = (body, self.etag(key), truncated)
        with self._lock:
            if key not in self._data:
                self._data[key] = entry
                self._size += len(body)
                while self._size > self.max_bytes and self._data:
                    _, (old, _, _) = self._data.popitem(last=False)
                    self._size -= len(old)
        return entry
