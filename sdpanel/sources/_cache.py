"""A small on-disk JSON cache with a time to live, for API responses.

Keys are hashed (sha256) so a key may hold any text; callers must keep secrets out of the
key anyway (the token never enters it) so two users sharing a store share public answers
only. Writes are atomic (temp file + rename) so a crash never leaves half a JSON file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any


def _redact(text: str) -> str:
    from sdpanel.settings import redact

    return redact(text)


class DiskCache:
    def __init__(self, directory: str | os.PathLike[str], ttl: float = 3600.0) -> None:
        self.directory = Path(directory)
        self.ttl = ttl

    def _path(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return self.directory / digest[:2] / f"{digest}.json"

    def get(self, key: str, ttl: float | None = None) -> Any | None:
        """The cached value, or None when absent, expired or unreadable."""
        path = self._path(key)
        try:
            age = time.time() - path.stat().st_mtime
            if age > (self.ttl if ttl is None else ttl):
                return None
            return json.loads(path.read_text(encoding="utf-8"))["value"]
        except (OSError, ValueError, KeyError):
            return None

    def set(self, key: str, value: Any) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                # The hint helps a human reading the cache; keys hold no secrets, redact anyway.
                json.dump({"key_hint": _redact(key[:200]), "value": value}, fh)
            os.replace(tmp, path)
        except OSError:
            # A cache that cannot be written (read-only disk, full disk) only costs speed.
            return

    def clear(self) -> None:
        if not self.directory.is_dir():
            return
        for p in self.directory.rglob("*.json"):
            p.unlink(missing_ok=True)
