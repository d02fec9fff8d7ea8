"""The process's download queue as a runtime service, shared by the panel, the notebook
cell and the REST API, plus a plain-text summary for headless cells and the CLI."""

from __future__ import annotations

import os
from typing import Any

from sdpanel.runtime import Runtime, get_runtime
from sdpanel.storage import StorageRoot, human_bytes

from ._queue import DownloadQueue

__all__ = ["shared_queue", "summarize"]


def shared_queue(storage_root: str | os.PathLike[str] | StorageRoot, *, runtime: Runtime | None = None,
                 settings: Any = None) -> DownloadQueue:
    """The one queue for ``storage_root`` in this process, created from the settings
    (``max_concurrent_downloads``, ``download_engine``, ``connections_per_file``) and
    restored from its journal on the runtime loop. Call its coroutines with
    ``runtime.submit(q.add(specs))`` etc.; ``items()`` / ``totals()`` are plain reads."""
    rt = runtime or get_runtime()
    root = storage_root if isinstance(storage_root, StorageRoot) else StorageRoot.at(storage_root)

    def factory() -> DownloadQueue:
        s = settings
        if s is None:
            from sdpanel.settings import load_settings

            s = load_settings(root.path)
        return DownloadQueue(root, rt.bus, max_concurrent=s.max_concurrent_downloads,
                             engine=s.download_engine, connections=s.connections_per_file)

    queue: DownloadQueue = rt.service(f"downloads:{root.path}", factory)
    if not queue._started:
        rt.submit(queue.start(), name="downloads.restore", topic="downloads")
    return queue


def summarize(items: list[dict[str, Any]]) -> str:
    """One line per file (name, size, state, where or why) and a totals line."""
    lines = []
    for i in items:
        size = human_bytes(i["total"]) if i.get("total") else "?"
        tail = i.get("path") if i["state"] == "done" else (i.get("error") or "")
        lines.append(f"{i['state']:<9} {i['name']}  {size}  {tail}".rstrip())
    done = sum(1 for i in items if i["state"] == "done")
    lines.append(f"{done} of {len(items)} downloaded and verified")
    return "\n".join(lines)
