"""The Models tab's store-aware intents: refuse a second copy of what the store has (offer
a link), link it, list updates of installed models, every version of a model by file
preference, and hide creators/models (kept in the store, so every session honours them).

The work lives in ``sdpanel.sources`` (``find_in_store``, ``link_instead``,
``all_version_specs``, ``HiddenList``, ``LocalIndex.check_updates``); the CLI calls the
same functions. This module only turns them into panel messages.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from sdpanel.settings import redact

from ._models_cards import civitai_card

if TYPE_CHECKING:
    from sdpanel.downloads import DownloadSpec
    from sdpanel.sources import AlreadyHave, HiddenList

    from ._models_tab import ModelsController

__all__ = ["StoreActions"]


class StoreActions:
    def __init__(self, ctl: ModelsController) -> None:
        self.ctl = ctl
        self.pending: dict[str, AlreadyHave] = {}
        """Selection keys held back because the store has them (until linked or forced)."""
        self._hidden: HiddenList | None = None

    # ---- hidden creators and models --------------------------------------------------
    def hidden(self) -> HiddenList:
        if self._hidden is None:
            from sdpanel.sources import HiddenList

            from ._services import storage_root

            self._hidden = HiddenList.load(storage_root())
        return self._hidden

    def visible(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            hidden = self.hidden()
        except Exception:  # noqa: BLE001 - no store: nothing is hidden
            return items
        return [i for i in items if not hidden.hides(i)]

    def hide(self, payload: dict[str, Any]) -> str:
        hidden = self.hidden()
        if payload.get("creator"):
            hidden.hide_creator(str(payload["creator"]))
            what = f"@{str(payload['creator']).lstrip('@')}"
        else:
            hidden.hide_model(int(payload["id"]), str(payload.get("name") or "")[:120])
            what = str(payload.get("name") or f"model {payload['id']}")
        return f"Hidden {what} from search results (in every session)."

    def unhide_all(self) -> str:
        self.hidden().unhide(everything=True)
        return "Hidden creators and models show again."

    def meta(self) -> dict[str, Any]:
        try:
            return {"hidden": self.hidden().count()}
        except Exception:  # noqa: BLE001
            return {"hidden": 0}

    # ---- duplicates --------------------------------------------------------------------
    async def split_duplicates(self, keyed: list[tuple[str, str, DownloadSpec]]
                               ) -> tuple[list[tuple[str, str, DownloadSpec]], list[dict[str, Any]]]:
        """(entries to download, entries the store already has as panel notices)."""
        from sdpanel.sources import LocalIndex, find_in_store

        from ._services import storage_root

        root = storage_root()
        index = LocalIndex(root)
        await index.ascan()
        todo, notices = [], []
        for key, name, spec in keyed:
            have = find_in_store(index, spec)
            if have is None:
                todo.append((key, name, spec))
                continue
            self.pending[key] = have
            notices.append({"k": key, "n": name, "message": have.message(root),
                            "path": os.path.relpath(have.path, root.path)})
        return todo, notices

    def link(self, keys: list[str]) -> tuple[list[str], list[str]]:
        """Link the store's copies for these held-back keys: (linked keys, problems)."""
        from sdpanel.sources import SourceError, link_instead

        from ._services import storage_root

        root = storage_root()
        done, problems = [], []
        for key in keys:
            have = self.pending.pop(key, None)
            if have is None:
                continue
            try:
                link_instead(root, have)
                done.append(key)
            except (SourceError, OSError) as exc:
                problems.append(redact(str(exc)))
        return done, problems

    # ---- updates and every version ---------------------------------------------------
    async def update_cards(self) -> tuple[list[dict[str, Any]], str]:
        """Cards (newest version, "update" badge) for installed models with a newer one."""
        from sdpanel.sources import LocalIndex

        from ._models_cards import LocalState
        from ._services import storage_root

        ctl = self.ctl
        ctx = ctl._context()
        index = LocalIndex(storage_root())
        models = await index.ascan()
        found = await index.check_updates(ctx.civitai())
        local = LocalState(versions=index.installed_versions(),
                           models={m.model_id for m in models if m.model_id is not None and m.source == "civitai"},
                           hashes={m.sha256 for m in models if m.sha256})
        cards, seen = [], set()
        for m in found:
            if m.model_id in seen or m.model_id is None:
                continue
            seen.add(m.model_id)
            item = await ctx.civitai().model(m.model_id)
            ctl._remember([item])
            card = civitai_card(item, local)
            if card is not None:
                card["st"] = "update"  # the card shows the newest version; the store has an older one
                cards.append(card)
        installed = len({m.model_id for m in models if m.model_id is not None})
        note = (f"{len(cards)} of {installed} installed CivitAI model{'s' if installed != 1 else ''} "
                "have a newer version") if installed else "No CivitAI models in the store yet"
        return cards, note

    async def all_version_specs(self, model_id: int, prefer: str) -> tuple[list[tuple[str, str, DownloadSpec]], list[str]]:
        from sdpanel.sources import FilePrefs, all_version_specs

        ctl = self.ctl
        plan = await all_version_specs(ctl._context(), model_id, FilePrefs.parse(prefer),
                                       ctl.models.get(model_id))
        keyed = [(f"civitai:{s.metadata['version_id']}:{s.metadata['file_id']}",
                  f"{s.metadata.get('model_name')} · {s.filename}", s) for s in plan.specs]
        return keyed, plan.skipped
