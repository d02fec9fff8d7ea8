"""Creators and models a user never wants to see in search results again, kept in the
store (``.sdpanel/models-hidden.json``) so every session, kernel and the CLI honour them.
Written atomically; a damaged file counts as "nothing hidden" rather than breaking search."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

from sdpanel.storage import StorageRoot

__all__ = ["HiddenList"]

_FILE = "models-hidden.json"


@dataclass
class HiddenList:
    root: StorageRoot
    creators: set[str] = field(default_factory=set)
    """Lower-cased CivitAI user names."""
    models: dict[int, str] = field(default_factory=dict)
    """Model id → its name when hidden (so a list can say what it is)."""

    @classmethod
    def load(cls, root: StorageRoot) -> HiddenList:
        hidden = cls(root)
        try:
            data = json.loads(root.state_path(_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return hidden
        if isinstance(data, dict):
            hidden.creators = {str(c).lower() for c in data.get("creators") or [] if str(c).strip()}
            models = data.get("models") or {}
            if isinstance(models, dict):
                hidden.models = {int(k): str(v) for k, v in models.items() if str(k).isdigit()}
        return hidden

    def save(self) -> None:
        path = self.root.state_path(_FILE)
        fd, tmp = tempfile.mkstemp(prefix=".hidden-", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"creators": sorted(self.creators),
                           "models": {str(k): v for k, v in sorted(self.models.items())}}, fh, indent=2)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise

    def hide_creator(self, username: str) -> None:
        name = username.strip().lstrip("@").lower()
        if not name:
            raise ValueError("Name the creator to hide (their CivitAI user name).")
        self.creators.add(name)
        self.save()

    def hide_model(self, model_id: int, name: str = "") -> None:
        self.models[int(model_id)] = name
        self.save()

    def unhide(self, *, creator: str | None = None, model_id: int | None = None, everything: bool = False) -> None:
        if everything:
            self.creators.clear()
            self.models.clear()
        if creator:
            self.creators.discard(creator.strip().lstrip("@").lower())
        if model_id is not None:
            self.models.pop(int(model_id), None)
        self.save()

    def hides(self, item: dict[str, Any]) -> bool:
        """Is this CivitAI model (search item JSON) hidden, by id or by its creator?"""
        creator = str((item.get("creator") or {}).get("username") or "").lower()
        return item.get("id") in self.models or (bool(creator) and creator in self.creators)

    def count(self) -> int:
        return len(self.creators) + len(self.models)
