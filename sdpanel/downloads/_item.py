"""One entry of the download queue: what to fetch, where it stands, and its journal form."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ._errors import mask_secrets, redact_text
from ._journal import spec_from_public_dict
from ._spec import DownloadSpec

__all__ = ["FINISHED", "STATES", "DownloadItem"]

STATES = ("queued", "active", "paused", "done", "failed", "cancelled")
FINISHED = frozenset({"done", "failed", "cancelled"})


@dataclass
class DownloadItem:
    spec: DownloadSpec
    engine: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    state: str = "queued"
    priority: int = 0
    seq: int = 0
    part_path: str | None = None
    final_path: str | None = None
    engine_state: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    done: int = 0
    total: int | None = None
    speed: float = 0.0
    attempts: int = 0
    sha256: str | None = None
    added: float = field(default_factory=time.time)
    finished: float | None = None
    name: str = ""
    name_guessed: bool = True
    """The name came from the URL, not the API or storage: Content-Disposition may replace it."""
    # Runtime only (not journalled): why the running task is being cancelled.
    stop: str | None = field(default=None, repr=False)
    tailing: bool = field(default=False, repr=False)
    """Its transfer has connections with nothing left to fetch: the next file may start."""

    def __post_init__(self) -> None:
        if not self.name:
            self.name = self.spec.filename or _name_from_url(self.spec.url) or self.id
        if self.spec.filename:
            self.name_guessed = False
        if not self.priority:
            self.priority = self.spec.priority
        if self.total is None:
            self.total = self.spec.size

    @property
    def eta(self) -> float | None:
        if not self.total or self.speed <= 0 or self.state != "active":
            return None
        return max(0.0, (self.total - self.done) / self.speed)

    def view(self) -> dict[str, Any]:
        """What panels, the REST API and cells show (JSON-safe, no header values)."""
        return {
            "id": self.id, "name": self.name, "kind": self.spec.kind, "source": self.spec.source,
            "url": redact_text(self.spec.url), "state": self.state, "priority": self.priority,
            "done": self.done, "total": self.total, "speed": self.speed, "eta": self.eta,
            "engine": self.engine, "path": self.final_path or self.part_path,
            "sha256": self.sha256, "error": (self.error or {}).get("message"),
            "reason": (self.error or {}).get("reason"), "attempts": self.attempts,
            "added": self.added, "finished": self.finished,
        }

    def to_journal(self) -> dict[str, Any]:
        return {
            # Stored URLs lose their tokens and signatures (a restored signed link must be
            # pasted again, see DownloadQueue.restore).
            "id": self.id, "spec": mask_secrets(self.spec.to_public_dict()), "engine": self.engine,
            "state": self.state, "priority": self.priority, "seq": self.seq,
            "part_path": self.part_path, "final_path": self.final_path,
            "engine_state": self.engine_state, "error": self.error, "done": self.done,
            "total": self.total, "attempts": self.attempts, "sha256": self.sha256,
            "added": self.added, "finished": self.finished, "name": self.name,
            "name_guessed": self.name_guessed,
        }

    @classmethod
    def from_journal(cls, data: dict[str, Any]) -> DownloadItem:
        keys = {"id", "engine", "state", "priority", "seq", "part_path", "final_path",
                "engine_state", "error", "done", "total", "attempts", "sha256", "added",
                "finished", "name", "name_guessed"}
        values = {k: v for k, v in data.items() if k in keys}
        return cls(spec=spec_from_public_dict(data["spec"]), **values)


def _name_from_url(url: str) -> str:
    last = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    return Path(last).name if "." in last else ""
