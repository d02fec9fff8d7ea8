"""The storage service for the runtime: the same operations as the functions, run off the
loop (they are file-system bound) and published on the bus under topic ``storage`` so the
Storage panel, the REST API and headless cells all see the same results.

Events: ``StateEvent(key="report"|"link:<webui>"|"unlink:<webui>"|"dedup"|"clean",
state="ready"|"done"|"failed"|"preview", data=<JSON-safe dict>)``, ``LogEvent`` per warning or
error line, ``ProgressEvent(key="dedup")`` while hashing (at most 10 per second).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any

from sdpanel.runtime import EventBus, LogEvent, ProgressEvent, StateEvent

from ._cleaner import CleanPlan, CleanResult, apply_clean, plan_clean
from ._dedup import DedupReport, dedup
from ._links import LinkReport, link_webui, unlink_webui
from ._root import StorageRoot
from ._usage import UsageReport, usage_report

TOPIC = "storage"


class StorageService:
    def __init__(self, bus: EventBus, storage_root: StorageRoot | str | os.PathLike[str],
                 work_dir: str | os.PathLike[str] | None = None) -> None:
        self.bus = bus
        self.root = storage_root if isinstance(storage_root, StorageRoot) else StorageRoot.at(storage_root)
        self.work_dir = work_dir

    def _state(self, key: str, state: str, data: dict[str, Any]) -> None:
        self.bus.publish(StateEvent(TOPIC, key=key, state=state, data=data))

    def _log(self, key: str, lines: Iterable[str], level: str) -> None:
        for line in lines:
            self.bus.publish(LogEvent(TOPIC, key=key, level=level, message=line))  # type: ignore[arg-type]

    async def report(self, webui_dirs: Mapping[str, Any] | None = None) -> UsageReport:
        rep = await asyncio.to_thread(usage_report, self.root, self.work_dir, webui_dirs)
        self._state("report", "ready", rep.to_dict())
        return rep

    async def _link(self, verb: str, webui_dir: str | os.PathLike[str], webui: str) -> LinkReport:
        fn = link_webui if verb == "link" else unlink_webui
        rep = await asyncio.to_thread(fn, self.root, webui_dir, webui)
        key = f"{verb}:{rep.webui}"
        self._log(key, rep.warnings, "warning")
        self._log(key, rep.errors, "error")
        data = asdict(rep)
        data["summary"] = rep.summary()
        self._state(key, "done" if rep.ok else "failed", data)
        return rep

    async def link(self, webui_dir: str | os.PathLike[str], webui: str) -> LinkReport:
        return await self._link("link", webui_dir, webui)

    async def unlink(self, webui_dir: str | os.PathLike[str], webui: str) -> LinkReport:
        return await self._link("unlink", webui_dir, webui)

    async def dedup(self, dry_run: bool = False) -> DedupReport:
        last = 0.0

        def progress(done: int, total: int) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= 0.1 or done >= total:
                last = now
                self.bus.publish(ProgressEvent(TOPIC, key="dedup", done=done, total=total,
                                               message="hashing files of equal size"))

        rep = await asyncio.to_thread(dedup, self.root, dry_run, 1, None, progress)
        self._log("dedup", rep.errors, "error")
        self._state("dedup", "done", {**asdict(rep), "summary": rep.summary()})
        return rep

    async def plan_clean(self, **criteria: Any) -> CleanPlan:
        plan = await asyncio.to_thread(lambda: plan_clean(self.root, **criteria))
        self._state("clean", "preview", {**asdict(plan), "bytes": plan.bytes})
        return plan

    async def apply_clean(self, plan: CleanPlan) -> CleanResult:
        res = await asyncio.to_thread(apply_clean, plan)
        self._log("clean", [f"skipped {p}: {why}" for p, why in res.skipped], "warning")
        self._log("clean", res.errors, "error")
        self._state("clean", "done", asdict(res))
        return res
