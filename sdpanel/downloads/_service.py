"""The process's download queue as a runtime service, shared by the panel, the notebook
cell and the REST API, plus a plain-text summary for headless cells and the CLI."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from sdpanel.runtime import Runtime, get_runtime
from sdpanel.storage import StorageRoot, human_bytes

from ._errors import redact_text
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


def summarize(items: list[dict[str, Any]], problems: Sequence[tuple[str, str]] = ()) -> str:
    """A headline (how many of how many verified), then one line per file: state, name,
    size, then ``sha256 <prefix>`` (verified) or the reason it did not finish.
    ``problems`` are ``(what, why)`` for entries that never reached the queue (a link that
    did not resolve). Secrets are masked."""
    width = max([len(i["name"]) for i in items] + [len(w) for w, _ in problems] + [10])
    width = min(width, 60)
    lines = []
    for i in items:
        size = human_bytes(i["total"]) if i.get("total") else "?"
        if i["state"] == "done":
            tail = f"sha256 {i['sha256'][:12]}…" if i.get("sha256") else "(no hash)"
        else:
            tail = i.get("error") or f"ended {i['state']}"
        lines.append(f"  {i['state']:<9} {i['name']:<{width}}  {size:>9}  {tail}")
    for what, why in problems:
        lines.append(f"  {'failed':<9} {what:<{width}}  {'?':>9}  not queued: {why}")
    done = sum(1 for i in items if i["state"] == "done")
    total = len(items) + len(problems)
    head = f"Downloads: {done} of {total} file{'s' if total != 1 else ''} downloaded and verified"
    return redact_text("\n".join([head, *lines]))
