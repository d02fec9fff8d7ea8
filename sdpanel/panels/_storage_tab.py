"""The Storage tab: where the bytes are (treemap by kind → model, disk bars), the model
files (sortable in the browser), and the cleaner — criteria → preview → confirm → result.

Flow: the browser sends intents (``storage.refresh``, ``storage.preview`` with criteria,
``storage.apply`` with the preview's id, ``storage.cancel``). Each runs on the runtime
through the one :class:`~sdpanel.storage.StorageService` of the store, and the results come
back as runtime-owned traits through a :class:`~sdpanel.runtime.Publisher`. The plan the
user saw is kept here, in Python, and ``apply`` deletes exactly that plan (the cleaner
re-checks every entry), so the bytes freed are the bytes previewed.

Traits stay small (papermill stores them): at most ``MODEL_CAP`` models (largest first)
with short keys; the treemap gets the rest of a kind as one "N smaller files" block.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import traitlets

from ._controller import PanelSlot
from ._registry import register_tab

if TYPE_CHECKING:
    from sdpanel.storage import CleanPlan, CleanResult, StorageService, UsageReport

    from ._app import Panel

MODEL_CAP = 500  # models sent to the browser (largest first)
PLAN_CAP = 300  # preview rows sent to the browser (the count and bytes cover all)
SIDECARS = (".civitai.json", ".hf.json")


# ---- report → traits (pure; unit-tested) ----------------------------------------------------

def _rel(path: str, store: str) -> str:
    try:
        return str(Path(path).relative_to(store))
    except ValueError:
        return path


def base_model(model_path: str) -> str:
    """The base model named in the model's sidecar (``<stem>.civitai.json`` / ``.hf.json``),
    written by our downloads (``base_model``) or copied from CivitAI (``baseModel``)."""
    p = Path(model_path)
    for suffix in SIDECARS:
        side = p.with_name(p.stem + suffix)
        try:
            data = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            value = data.get("base_model") or data.get("baseModel")
            if value:
                return str(value)[:40]
    return ""


def _webui_names(labels: list[str]) -> list[str]:
    """``"comfyui (/content/ComfyUI)"`` → ``"ComfyUI"`` (the folder is in the WebUI list)."""
    from sdpanel.storage import webui_label

    out: list[str] = []
    for label in labels:
        wid = label.split(" (", 1)[0]
        try:
            name = webui_label(wid)
        except (KeyError, ValueError):
            name = wid
        if name not in out:
            out.append(name)
    return out


def usage_traits(rep: UsageReport, cap: int = MODEL_CAP) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(storage_usage, storage_models)`` for the browser."""
    from sdpanel.storage import kinds

    labels = {str(k["id"]): str(k.get("label", k["id"])) for k in kinds()}
    shown = rep.models[:cap]
    models = [{
        "p": _rel(m.path, rep.store), "k": m.kind, "s": m.bytes, "t": int(m.mtime),
        "b": base_model(m.path), "w": _webui_names(m.webuis), "d": m.duplicate,
    } for m in shown]
    kinds_out: list[dict[str, Any]] = [{"id": kid, "label": labels.get(kid, kid), "bytes": t["bytes"], "files": t["files"],
                  # bytes of the kind not covered by the models sent (sidecars, smaller files)
                  "rest": t["bytes"] - sum(m.bytes for m in shown if m.kind == kid),
                  "rest_files": t["files"] - sum(1 for m in shown if m.kind == kid)}
                 for kid, t in rep.kinds.items() if t["bytes"] > 0]
    kinds_out.sort(key=lambda k: -k["bytes"])
    disks = dict(rep.disks)
    if "work" in disks and "store" in disks:
        try:  # one file system: one bar
            if os.stat(disks["work"]["path"]).st_dev == os.stat(disks["store"]["path"]).st_dev:
                disks.pop("work")
        except OSError:
            pass
    usage = {
        "store": rep.store, "work_dir": rep.work_dir, "store_bytes": rep.store_bytes,
        "kinds": kinds_out, "outputs": rep.outputs_bytes, "state": rep.state_bytes,
        "disks": disks,
        "caches": {name: c["bytes"] for name, c in rep.caches.items()},
        "partials": {"count": len(rep.partials), "bytes": sum(p["bytes"] for p in rep.partials)},
        "webuis": [{"label": w["label"], "dir": w["dir"], "install": w["install"], "venv": w["venv"],
                    "outputs": w["outputs"]} for w in rep.webuis.values()],
        "models_total": len(rep.models), "models_shown": len(models),
        "duplicates": sum(1 for m in rep.models if m.duplicate),
        "updated": time.time(),
    }
    return usage, models


def plan_trait(plan: CleanPlan, plan_id: int, cap: int = PLAN_CAP) -> dict[str, Any]:
    return {
        "id": plan_id, "bytes": plan.bytes, "count": len(plan.items),
        "items": [{"p": _rel(i.path, plan.store), "r": i.reason, "s": i.size,
                   "l": i.is_link, "dir": i.is_dir} for i in plan.items[:cap]],
        "errors": plan.errors[:20], "summary": plan.summary().splitlines()[0],
    }


def result_trait(res: CleanResult, store: str) -> dict[str, Any]:
    return {
        "deleted": len(res.deleted), "bytes_freed": res.bytes_freed,
        "skipped": [f"{_rel(p, store)}: {why}" for p, why in res.skipped[:20]],
        "errors": res.errors[:20], "summary": res.summary().splitlines()[0],
    }


def criteria_from(payload: dict[str, Any]) -> dict[str, Any]:
    """The browser's cleaner form → ``plan_clean`` keywords. Bad values raise ValueError
    naming the field and the fix; nothing chosen at all is refused (no empty previews)."""
    from sdpanel.storage import cache_dirs, kind_ids

    names = {"larger_than_mb": "Larger than (MiB)", "older_than_days": "Older than (days)"}

    def number(key: str) -> float | None:
        raw = payload.get(key)
        if raw in (None, ""):
            return None
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"{names[key]}: {raw!r} is not a number; type digits or leave it empty") from None
        if value < 0:
            raise ValueError(f"{names[key]} must be 0 or more (got {value:g})")
        return value

    out: dict[str, Any] = {}
    kinds = [str(k) for k in payload.get("kinds") or []]
    unknown = [k for k in kinds if k not in kind_ids()]
    if unknown:
        raise ValueError(f"unknown kind(s) {', '.join(unknown)}; known: {', '.join(kind_ids())}")
    if kinds:
        out["kinds"] = kinds
    mb = number("larger_than_mb")
    if mb is not None:
        out["larger_than"] = int(mb * 1024 * 1024)
    days = number("older_than_days")
    if days is not None:
        out["older_than_days"] = days
    if payload.get("unused"):
        out["unused"] = True
    if payload.get("leftovers"):
        out["leftovers"] = True
    caches = [str(c) for c in payload.get("caches") or []]
    bad = [c for c in caches if c not in cache_dirs()]
    if bad:
        raise ValueError(f"unknown cache(s) {', '.join(bad)}; known: {', '.join(cache_dirs())}")
    if caches:
        out["caches"] = caches
    files = [str(f) for f in payload.get("files") or []]
    if files:
        out["files"] = files
    if not out:
        raise ValueError("Choose what to clean first: a kind, a size, an age, unused models, "
                         "leftovers, caches or files in the list")
    return out


# ---- the tab's live part ----------------------------------------------------------------------

class StorageTab:
    """Per-panel state: the store's service, the plan on show, the task in flight."""

    def __init__(self, panel: Panel) -> None:
        from sdpanel.runtime import Publisher

        self.panel = panel
        self.publisher = Publisher(panel, max_rate=10)
        self.plan: CleanPlan | None = None
        self.plan_id = 0
        self._lock = threading.Lock()
        self._busy = ""

    def service(self) -> StorageService:
        from sdpanel.cells import storage_service

        return storage_service()  # type: ignore[no-any-return]

    def _run(self, busy: str, make: Callable[[StorageService], Coroutine[Any, Any, None]],
             retry: str) -> None:
        from sdpanel.runtime import get_runtime
        from sdpanel.settings import redact

        with self._lock:
            if self._busy:
                self.panel.toast(f"Storage is busy ({self._busy}); try again when it is done.", "warning")
                return
            self._busy = busy
        self.publisher.update(storage_status={"busy": busy, "error": "", "retry": ""})

        async def job() -> None:
            try:
                await make(self.service())
                status = {"busy": "", "error": "", "retry": ""}
            except Exception as exc:  # noqa: BLE001 - the panel shows why, with a retry
                status = {"busy": "", "error": redact(f"{busy} failed: {exc}"), "retry": retry}
            with self._lock:
                self._busy = ""
            self.publisher.update(storage_status=status)

        get_runtime().submit(job(), name=f"storage-{busy}", topic="storage")

    async def _report(self, svc: StorageService) -> None:
        import asyncio

        rep = await svc.report()
        usage, models = await asyncio.to_thread(usage_traits, rep)  # sidecar reads: off the loop
        self.publisher.update(storage_usage=usage, storage_models=models)

    def refresh(self) -> None:
        self._run("refreshing", self._report, "storage.refresh")

    def preview(self, payload: dict[str, Any]) -> None:
        criteria = criteria_from(payload)  # a bad form raises here: the user gets a toast

        async def make(svc: StorageService) -> None:
            if "files" in criteria:  # the list sends paths relative to the store
                criteria["files"] = [str(svc.root.path / f) for f in criteria["files"]]
            plan = await svc.plan_clean(**criteria)
            with self._lock:
                self.plan_id += 1
                self.plan = plan
                pid = self.plan_id
            self.publisher.update(storage_plan=plan_trait(plan, pid), storage_result={})

        self._run("previewing", make, "")

    def apply(self, payload: dict[str, Any]) -> None:
        with self._lock:
            plan, pid = self.plan, self.plan_id
        if plan is None or payload.get("id") != pid:
            raise ValueError("That preview is out of date; press Preview again")

        async def make(svc: StorageService) -> None:
            res = await svc.apply_clean(plan)
            with self._lock:
                self.plan = None
            self.publisher.update(storage_plan={}, storage_result=result_trait(res, plan.store))
            await self._report(svc)

        self._run("cleaning", make, "")

    def cancel(self) -> None:
        with self._lock:
            self.plan = None
        self.publisher.update(storage_plan={})

    def attach(self) -> None:
        self.refresh()

    def detach(self) -> None:
        self.publisher.close()


_slot = PanelSlot("_sdp_storage", "Storage", StorageTab)
_tab = _slot.get


register_tab(
    "storage",
    "Storage",
    traits={
        "storage_usage": traitlets.Dict(),
        "storage_models": traitlets.List(traitlets.Dict()),
        "storage_plan": traitlets.Dict(),
        "storage_result": traitlets.Dict(),
        "storage_status": traitlets.Dict({"busy": "", "error": "", "retry": ""}),
    },
    actions={
        "storage.refresh": lambda p, _m: _tab(p).refresh(),
        "storage.preview": lambda p, m: _tab(p).preview(m),
        "storage.apply": lambda p, m: _tab(p).apply(m),
        "storage.cancel": lambda p, _m: _tab(p).cancel(),
    },
    attach=_slot.attach,
    order=500,
)
