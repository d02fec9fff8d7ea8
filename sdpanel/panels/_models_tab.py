"""The Models tab: browse CivitAI by kind (plus presets and Hugging Face repos), paste
links, see details, and send a multi-selection to the download queue.

Trait ownership (DESIGN.md): ``models_filters`` and ``models_selection`` are UI-owned
(written only by the browser); ``models_meta``, ``models_state``, ``models_page`` and
``models_details`` are runtime-owned, written through a :class:`Publisher`. Results travel
one page at a time (``models_page`` holds only the newest page; the browser appends), so
each page costs its own ~30 KB however far a user scrolls. Thumbnails are URLs the
browser loads itself. Every service error lands in ``models_state`` with a Retry; the
panel never dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import traitlets

from sdpanel.runtime import Publisher, get_runtime
from sdpanel.settings import redact

from ._controller import PanelSlot
from ._models_cards import (
    EXTRA_SUBTABS,
    SUBTABS,
    LocalState,
    civitai_card,
    civitai_details,
    civitai_types,
    hf_card,
    preset_card,
    spec_card,
    subtab_ids,
)
from ._models_store import StoreActions
from ._registry import register_tab

if TYPE_CHECKING:
    from sdpanel.downloads import DownloadSpec
    from sdpanel.sources import ResolveContext

    from ._app import Panel

log = logging.getLogger(__name__)

PAGE_SIZE = 100  # CivitAI's own default; one page fills several screens
_MODEL_CACHE = 3000  # model JSON kept for details and specs (LRU)
_INDEX_MAX_AGE = 60.0  # seconds before the local index is rescanned on the next search
_LINK = re.compile(r"^(https?://|urn:air:|hf://|preset:)", re.I)
_HF_FILE = re.compile(r"^[\w.-]+/[\w.-]+/\S+\.\w+$")
_HF_REPO = re.compile(r"^(?:https?://[^/]+/)?(?P<repo>[\w.-]+/[\w.-]+)/?$")
_HF_WEIGHTS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".onnx")


def is_link(text: str) -> bool:
    return bool(_LINK.match(text) or _HF_FILE.match(text))


class ModelsController:
    """Per-panel state of the Models tab. Action handlers run on the kernel thread and
    submit coroutines to the runtime; those publish results."""

    def __init__(self, panel: Panel, ctx: ResolveContext | None = None) -> None:
        self.panel = panel
        self.pub = Publisher(panel, max_rate=10)
        self.ctx = ctx
        self._lock = threading.Lock()
        self.seq = 0
        self.details_seq = 0
        self.cursor: str | None = None
        self.params: dict[str, Any] = {}
        self.pages: list[list[dict[str, Any]]] = []
        self.loading = False
        self.failed: tuple[str, dict[str, Any]] | None = None
        self.models: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self.specs: dict[str, DownloadSpec] = {}
        self.local = LocalState()
        self.index_at = 0.0
        self.index_task: asyncio.Task[None] | None = None
        self.enums: dict[str, Any] | None = None
        self.meta: dict[str, Any] = {}
        self.store = StoreActions(self)
        self.auto = False
        self.enums_task: asyncio.Task[None] | None = None

    # ---- setup ----------------------------------------------------------------------
    def attach(self) -> None:
        from sdpanel.sources import PERIODS, SORTS

        from ._services import storage_root
        from ._settings_tab import resolved_settings

        settings = resolved_settings()
        try:
            root = storage_root()
            from sdpanel.storage import free_bytes

            free, where = free_bytes(root.path), str(root.path)
        except Exception as exc:  # noqa: BLE001 - no store yet: the tab still browses
            free, where = None, redact(str(exc))
        self.meta = {"subtabs": [{"id": s[0], "label": s[1]} for s in SUBTABS]
                     + [{"id": s[0], "label": s[1]} for s in EXTRA_SUBTABS],
                     "base_models": [], "sorts": list(SORTS), "periods": list(PERIODS),
                     "nsfw": bool(settings.nsfw), "free": free, "root": where,
                     "page_size": PAGE_SIZE, "local": self.local.to_trait(), **self.store.meta()}
        self.panel.models_meta = dict(self.meta)
        self.panel.models_state = {"status": "idle", "seq": 0}

    def detach(self) -> None:
        self.pub.close()
        if self.ctx is not None:
            ctx, self.ctx = self.ctx, None
            get_runtime().submit(ctx.aclose(), name="models-close", topic="models")

    def _context(self) -> ResolveContext:
        if self.ctx is None:
            from sdpanel.sources import CivitAIClient, ResolveContext

            from ._settings_tab import resolved_settings

            ctx = ResolveContext.from_settings(resolved_settings(), timeout=20.0)
            # A panel answers fast or says why: one short back-off, then the Retry button.
            cache = ctx.cache_dir / "civitai" if ctx.cache_dir else None
            ctx._civitai = CivitAIClient(ctx.civitai_base_url, ctx.civitai_token, cache_dir=cache,
                                         timeout=20.0, max_retries=1, max_retry_wait=5.0,
                                         full_catalogue=ctx.civitai_full_catalogue)
            self.ctx = ctx
        return self.ctx

    def _publish_meta(self, **changes: Any) -> None:
        self.meta = {**self.meta, **changes}
        self.pub.update(models_meta=dict(self.meta))

    def _state(self, **values: Any) -> None:
        self.pub.update(models_state={"seq": self.seq, **values})

    # ---- intents (kernel thread) ----------------------------------------------------
    def search(self, payload: dict[str, Any]) -> None:
        filters = dict(payload.get("filters") or self.panel.models_filters or {})
        with self._lock:
            self.seq += 1
            seq = self.seq
            self.cursor, self.pages, self.loading, self.failed = None, [], True, None
            # The tab's own first search (nobody asked): its failure is a notice, not an alarm.
            self.auto = bool(payload.get("auto"))
        self._state(status="loading", op="search", sub=filters.get("sub", ""))
        get_runtime().submit(self._search(seq, filters), name="models-search", topic="models")

    def more(self, payload: dict[str, Any]) -> None:
        with self._lock:
            if self.loading or not self.cursor or payload.get("seq", self.seq) != self.seq:
                return  # already loading, at the end, or asked about an older search
            self.loading = True
            seq = self.seq
        self._state(status="loading", op="more", **self._summary())
        get_runtime().submit(self._more(seq), name="models-more", topic="models")

    def retry(self, _payload: dict[str, Any]) -> None:
        failed, self.failed = self.failed, None
        if failed is None:
            return
        op, payload = failed
        {"search": self.search, "more": self.more, "details": self.details,
         "download": self.download, "updates": self.updates}[op](payload)

    def details(self, payload: dict[str, Any]) -> None:
        model_id = int(payload["id"])
        with self._lock:
            self.details_seq += 1
            dseq = self.details_seq
        self.pub.update(models_details={"status": "loading", "id": model_id})
        get_runtime().submit(self._details(dseq, model_id), name="models-details", topic="models")

    def download(self, payload: dict[str, Any]) -> None:
        selection = list(payload.get("selection") or self.panel.models_selection or [])
        if not selection:
            self.panel.toast("Nothing selected: tick the models to download first.", level="warning")
            return
        get_runtime().submit(self._download(selection, force=bool(payload.get("force"))),
                             name="models-download", topic="models")

    def link(self, payload: dict[str, Any]) -> None:
        """Use the store's copies of held-back selection entries instead of downloading."""
        keys = [str(k) for k in payload.get("keys") or []]
        done, problems = self.store.link(keys)
        message = f"Linked {len(done)} file{'s' if len(done) != 1 else ''} the store already had." if done else ""
        self.panel.send({"cue": "models.sent", "keys": done, "message": message,
                         "problems": ["Not linked: " + p for p in problems]})

    def updates(self, payload: dict[str, Any]) -> None:
        """Show installed CivitAI models that have a newer version, as result cards."""
        with self._lock:
            self.seq += 1
            seq = self.seq
            self.cursor, self.pages, self.loading, self.failed = None, [], True, None
        self._state(status="loading", op="search", sub=self.params.get("sub", ""))
        get_runtime().submit(self._updates(seq), name="models-updates", topic="models")

    def all_versions(self, payload: dict[str, Any]) -> None:
        model_id = int(payload["id"])
        prefer = str(payload.get("prefer") or "fp16,pruned")
        get_runtime().submit(self._all_versions(model_id, prefer), name="models-all-versions", topic="models")

    def hide(self, payload: dict[str, Any]) -> None:
        try:
            message = self.store.unhide_all() if payload.get("undo") else self.store.hide(payload)
        except (ValueError, KeyError, OSError) as exc:
            self.panel.toast(redact(str(exc)) or "Could not hide that.", level="warning")
            return
        self._publish_meta(**self.store.meta())
        self.panel.toast(message, level="info")
        self.search({"filters": self.params.get("filters") or self.panel.models_filters or {}})

    def replay(self, payload: dict[str, Any]) -> None:
        """A view that missed pages (opened late, or a page was coalesced) gets them all."""
        with self._lock:
            pages = [list(p) for p in self.pages]
            seq = self.seq
        self.panel.send({"cue": "models.replay", "seq": seq, "pages": pages})

    # ---- work (runtime loop) --------------------------------------------------------
    def _summary(self) -> dict[str, Any]:
        return {"sub": self.params.get("sub", ""), "count": sum(len(p) for p in self.pages),
                "more": bool(self.cursor), "note": self.params.get("note", "")}

    async def _ready(self, *, wait_enums: bool = True) -> ResolveContext:
        """The sources context, with CivitAI's base-model list asked for once. Presets and
        Hugging Face do not wait for it: offline (or with a slow CivitAI) they still show."""
        ctx = self._context()
        if self.enums is None and (self.enums_task is None or self.enums_task.done()):
            self.enums_task = asyncio.ensure_future(self._load_enums(ctx))
        if wait_enums and self.enums_task is not None:
            await asyncio.shield(self.enums_task)
        if time.monotonic() - self.index_at > _INDEX_MAX_AGE and (self.index_task is None or self.index_task.done()):
            self.index_at = time.monotonic()
            self.index_task = asyncio.ensure_future(self._scan_index())
        return ctx

    async def _load_enums(self, ctx: ResolveContext) -> None:
        try:
            self.enums = await ctx.civitai().enums()
            self._publish_meta(base_models=list(self.enums.get("ActiveBaseModel")
                                                or self.enums.get("BaseModel") or []))
        except Exception as exc:  # noqa: BLE001 - filters still work without the list
            log.info("CivitAI enums unavailable: %s", redact(str(exc)))

    async def _scan_index(self) -> None:
        from sdpanel.sources import LocalIndex

        from ._services import storage_root

        try:
            index = LocalIndex(storage_root())
            models = await index.ascan()
        except Exception as exc:  # noqa: BLE001 - badges are a nicety; browsing goes on
            log.info("Local index scan failed: %s", redact(str(exc)))
            return
        self.local = LocalState(versions=index.installed_versions(),
                                models={m.model_id for m in models if m.model_id is not None and m.source == "civitai"},
                                hashes={m.sha256 for m in models if m.sha256})
        self._publish_meta(local=self.local.to_trait())

    def _fail(self, seq: int, op: str, payload: dict[str, Any], exc: BaseException) -> None:
        from sdpanel.sources import SourceError

        message = str(exc) if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"
        with self._lock:
            if seq != self.seq:
                return
            self.loading = False
            self.failed = (op, payload)
        self._state(status="error", op=op, error=redact(message) or type(exc).__name__, auto=self.auto,
                    **self._summary())

    def _remember(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            if isinstance(item.get("id"), int):
                self.models[item["id"]] = item
                self.models.move_to_end(item["id"])
        while len(self.models) > _MODEL_CACHE:
            self.models.popitem(last=False)

    def _publish_page(self, seq: int, cards: list[dict[str, Any]], cursor: str | None) -> None:
        with self._lock:
            if seq != self.seq:
                return  # a newer search started: drop this answer
            self.pages.append(cards)
            self.cursor = cursor
            self.loading = False
            index = len(self.pages) - 1
        # One batch: the page and the state that describes it arrive together.
        self.pub.update(models_page={"seq": seq, "index": index, "cards": cards})
        self._state(status="ready", op="search" if index == 0 else "more", **self._summary())

    async def _search(self, seq: int, filters: dict[str, Any]) -> None:
        sub = str(filters.get("sub") or "checkpoints")
        query = str(filters.get("query") or "").strip()
        self.params = {"sub": sub, "filters": filters, "note": ""}
        try:
            if sub not in subtab_ids():
                raise ValueError(f"Unknown models sub-tab {sub!r}")
            ctx = await self._ready(wait_enums=sub not in ("presets", "hf"))
            if sub == "presets" and not is_link(query):
                self._publish_page(seq, self._presets(query, filters), None)
                return
            if is_link(query):
                self.params["note"] = "Pasted link"
                self._publish_page(seq, [await self._link_card(ctx, query)], None)
                return
            if sub == "hf":
                self._publish_page(seq, await self._hf_repo(ctx, query), None)
                return
            kwargs: dict[str, Any] = {"types": civitai_types(sub), "limit": PAGE_SIZE,
                                      "base_models": [str(b) for b in filters.get("base_models") or []] or None,
                                      "sort": filters.get("sort") or None, "period": filters.get("period") or None,
                                      "nsfw": True if filters.get("nsfw") else None}
            if query.startswith("#") and len(query) > 1:
                kwargs["tag"], self.params["note"] = query[1:].strip(), f"Tag {query}"
            elif query.startswith("@") and len(query) > 1:
                kwargs["username"], self.params["note"] = query[1:].strip(), f"Creator {query}"
            elif query:
                kwargs["query"] = query
            self.params["kwargs"] = kwargs
            page = await ctx.civitai().search(**kwargs)
            self._remember(page.items)
            cards = self._cards(page.items, bool(filters.get("nsfw")))
            self._publish_page(seq, cards, page.next_cursor)
        except Exception as exc:  # noqa: BLE001 - shown in the panel with a Retry
            self._fail(seq, "search", {"filters": filters}, exc)

    async def _more(self, seq: int) -> None:
        try:
            ctx = await self._ready()
            page = await ctx.civitai().search(**self.params["kwargs"], cursor=self.cursor)
            self._remember(page.items)
            self._publish_page(seq, self._cards(page.items, bool(self.params["filters"].get("nsfw"))),
                               page.next_cursor)
        except Exception as exc:  # noqa: BLE001
            self._fail(seq, "more", {"seq": seq}, exc)

    def _cards(self, items: list[dict[str, Any]], nsfw: bool) -> list[dict[str, Any]]:
        out = []
        for item in self.store.visible(items):
            if item.get("nsfw") and not nsfw:
                continue  # NSFW off: never show one, whatever the API sent
            card = civitai_card(item, self.local)
            if card is not None:
                out.append(card)
        return out

    def _presets(self, query: str, filters: dict[str, Any]) -> list[dict[str, Any]]:
        from sdpanel.sources import presets

        bases = set(filters.get("base_models") or [])
        needle = query.lower().lstrip("#@")
        return [preset_card(p, self.local) for p in presets()
                if (not needle or needle in f"{p['name']} {p['id']} {p.get('group', '')}".lower())
                and (not bases or p.get("base_model") in bases)]

    async def _link_card(self, ctx: ResolveContext, text: str) -> dict[str, Any]:
        from sdpanel.sources import resolve_link

        spec = await resolve_link(text, ctx)
        key = f"link:{text}"
        card = spec_card(key, spec, self.local)
        self.specs[card["k"]] = spec
        return card

    async def _hf_repo(self, ctx: ResolveContext, text: str) -> list[dict[str, Any]]:
        m = _HF_REPO.match(text)
        if not m:
            self.params["note"] = "Paste a Hugging Face repo (owner/name) or a file link"
            return []
        repo = m["repo"]
        entries = await ctx.hf().tree(repo)
        self.params["note"] = f"Files of {repo}"
        return [hf_card(repo, e, self.local) for e in entries
                if e.get("type") == "file" and str(e.get("path", "")).lower().endswith(_HF_WEIGHTS)]

    async def _details(self, dseq: int, model_id: int) -> None:
        try:
            ctx = self._context()
            item = self.models.get(model_id)
            if item is None or "description" not in item:
                item = await ctx.civitai().model(model_id)
                self._remember([item])
            data = civitai_details(item, ctx.civitai_base_url, self.local)
            if dseq == self.details_seq:
                self.pub.update(models_details={"status": "ready", "id": model_id, "model": data})
        except Exception as exc:  # noqa: BLE001
            if dseq == self.details_seq:
                self.pub.update(models_details={"status": "error", "id": model_id, "error": redact(str(exc))})

    async def spec_for(self, entry: dict[str, Any]) -> DownloadSpec:
        """The download spec of one selection entry (entries come from the browser:
        every field is checked before use)."""
        from sdpanel.sources import LinkError, civitai_spec, hf_spec, preset_spec, resolve_link

        ctx = self._context()
        key = str(entry.get("k") or "")
        if key in self.specs:
            return self.specs[key]
        if key.startswith("civitai:"):
            _, v, f = key.split(":", 2)
            version_id, file_id = int(v), int(f) if f.isdigit() else None
            model_id = int(entry["id"]) if str(entry.get("id", "")).isdigit() else None
            item = self.models.get(model_id) if model_id is not None else None
            if item is None or not any(x.get("id") == version_id for x in item.get("modelVersions") or []):
                version = await ctx.civitai().version(version_id)
                item = await ctx.civitai().model(int(version["modelId"]))
                self._remember([item])
            version = next(x for x in item.get("modelVersions") or [] if x.get("id") == version_id)
            files = version.get("files") or []
            file = next((x for x in files if x.get("id") == file_id), None)
            if file is None:
                raise LinkError(f"{item.get('name')} {version.get('name')} has no file {file_id} any more.")
            return civitai_spec(item, version, file, ctx)
        if key.startswith("preset:"):
            return preset_spec(key.split(":", 1)[1], ctx)
        if key.startswith("hf:"):
            _, repo, path = key.split(":", 2)
            return await hf_spec(ctx, repo, path)
        if key.startswith("link:"):
            return await resolve_link(key[5:], ctx)
        raise LinkError(f"Cannot download selection entry {key[:60]!r}: unknown source.")

    async def _updates(self, seq: int) -> None:
        try:
            self.params = {"sub": self.params.get("sub", ""), "filters": self.params.get("filters") or {},
                           "note": ""}
            await self._ready()
            cards, note = await self.store.update_cards()
            self.params["note"] = note
            self._publish_page(seq, cards, None)
        except Exception as exc:  # noqa: BLE001 - shown with a Retry
            self._fail(seq, "updates", {}, exc)

    async def _all_versions(self, model_id: int, prefer: str) -> None:
        from sdpanel.sources import SourceError

        try:
            keyed, skipped = await self.store.all_version_specs(model_id, prefer)
        except (SourceError, ValueError) as exc:
            self.panel.send({"cue": "models.sent", "keys": [], "message": "",
                             "problems": [redact(str(exc))]})
            return
        await self._send(keyed, [f"Skipped {s}" for s in skipped], selection=None, force=False)

    async def _download(self, selection: list[dict[str, Any]], force: bool = False) -> None:
        from sdpanel.sources import SourceError

        keyed: list[tuple[str, str, DownloadSpec]] = []
        problems: list[str] = []
        for entry in selection:
            name = str(entry.get("n") or entry.get("k"))[:80]
            try:
                keyed.append((str(entry.get("k")), name, await self.spec_for(entry)))
            except (SourceError, ValueError, KeyError, StopIteration) as exc:
                problems.append(f"Not sent: {name}: {redact(str(exc)) or type(exc).__name__}")
        await self._send(keyed, problems, selection=selection, force=force)

    async def _send(self, keyed: list[tuple[str, str, DownloadSpec]], problems: list[str], *,
                    selection: list[dict[str, Any]] | None, force: bool) -> None:
        """Queue these specs, except (unless ``force``) what the store already has: those
        come back as notices offering a link instead."""
        from sdpanel.storage import free_bytes, human_bytes

        from ._services import downloads_queue

        have: list[dict[str, Any]] = []
        try:
            if not force and keyed:
                keyed, have = await self.store.split_duplicates(keyed)
            queue = downloads_queue()
            specs = [spec for _k, _n, spec in keyed]
            if specs:
                await queue.add(specs)
        except Exception as exc:  # noqa: BLE001 - e.g. journal busy, no space: say why, keep the selection
            if selection is not None:
                self.failed = ("download", {"selection": selection, "force": force})
            self._state(status="error", op="download", error=redact(str(exc)), **self._summary())
            return
        sent = [k for k, _n, _s in keyed]
        total = sum(s.size or 0 for s in specs)
        # Shown in the tab itself (next to the selection it changes), not as a toast.
        message = f"Sent {len(sent)} file{'s' if len(sent) != 1 else ''} ({human_bytes(total)}) to Downloads." if sent else ""
        self.panel.send({"cue": "models.sent", "keys": sent, "message": message,
                         "problems": problems, "have": have})
        with contextlib.suppress(OSError):
            self._publish_meta(free=free_bytes(queue.root.path))


_slot = PanelSlot("_sdp_models", "Models", ModelsController)
_ctl = _slot.get


def _action(name: str) -> Any:
    return lambda panel, payload: getattr(_ctl(panel), name)(payload)


register_tab(
    "models",
    "Models",
    traits={
        "models_meta": traitlets.Dict(),
        "models_state": traitlets.Dict(),
        "models_page": traitlets.Dict(),
        "models_details": traitlets.Dict(),
        "models_filters": traitlets.Dict(),  # UI-owned
        "models_selection": traitlets.List(traitlets.Dict()),  # UI-owned
    },
    actions={f"models.{verb}": _action(verb) for verb in
             ("search", "more", "retry", "details", "download", "replay", "link", "updates",
              "all_versions", "hide")},
    attach=_slot.attach,
    order=20,
)
