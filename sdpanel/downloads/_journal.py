"""The download queue's journal: ``<storage>/.sdpanel/journals/downloads.json``.

One JSON document with every item (spec without header values, state, engine, part path,
engine resume state, error). Written atomically — a temp file in the same folder, flushed,
then ``os.replace`` — so a crash leaves the old journal or the new one, never half of one.
Tokens are never stored: specs keep only the names of their headers, and the queue
re-resolves tokens (``resolve_secret``) when it loads the journal.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ._spec import DownloadSpec

__all__ = ["JOURNAL_VERSION", "Journal", "JournalBusy", "spec_from_public_dict"]

JOURNAL_VERSION = 1


def spec_from_public_dict(data: dict[str, Any]) -> DownloadSpec:
    """A spec back from :meth:`DownloadSpec.to_public_dict`. Header values were never
    stored: the queue adds the source's token again at resolve time."""
    fields = {k: v for k, v in data.items() if k in DownloadSpec.__dataclass_fields__}
    fields["headers"] = {}
    return DownloadSpec(**fields)


class JournalBusy(RuntimeError):
    """Another live process owns this journal (two queues would overwrite each other)."""


class Journal:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None

    def lock(self) -> None:
        """Own the journal for this process (released on :meth:`unlock` or process death,
        so a crashed kernel never blocks the next one)."""
        if self._lock_fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalBusy(f"Another sdpanel process is running the download queue of "
                              f"{self.path.parent.parent.parent}: use that one (or stop it) "
                              "and try again.") from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def load(self) -> list[dict[str, Any]]:
        """The saved items, oldest first. A missing journal is empty; an unreadable one is
        moved aside (``.broken``) so the next save does not overwrite the evidence."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            items = data["items"]
            if not isinstance(items, list):
                raise ValueError("items is not a list")
            return [i for i in items if isinstance(i, dict) and "id" in i and "spec" in i]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError):
            with contextlib.suppress(OSError):
                os.replace(self.path, self.path.with_suffix(".json.broken"))
            return []

    def save(self, items: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"version": JOURNAL_VERSION, "items": items}, indent=1, sort_keys=True)
        fd, tmp = tempfile.mkstemp(prefix=".downloads-", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
