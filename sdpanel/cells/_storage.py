"""Cell 5, Storage: the Panel on its Storage tab (interactive), or a plain-text usage report
and — only when the parameters ask for it — a clean of leftovers and caches (headless).

Both paths go through the store's one :class:`~sdpanel.storage.StorageService` on the
runtime, so what the cell does is published on the bus like any other storage operation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ._settings_cell import current_settings, is_headless


def store_paths(**overrides: Any) -> tuple[str, str | None]:
    """``(storage root, work dir)`` from the settings and the platform; the work dir is None
    when it is the store itself (a local box), so it is not reported twice."""
    from sdpanel.platforms import detect_platform

    info = detect_platform()
    root = Path(current_settings(**overrides).storage or info.storage_root).expanduser().resolve()
    work = Path(info.work_dir).expanduser().resolve() if info.work_dir else None
    return str(root), (str(work) if work is not None and work != root else None)


def storage_service(root: str | None = None, work: str | None = None) -> Any:
    """The runtime's one StorageService for this store (the Panel's tab shares it)."""
    from sdpanel.runtime import get_runtime
    from sdpanel.storage import StorageService

    if root is None:
        root, work = store_paths()
    rt = get_runtime()
    return rt.service(f"storage:{root}:{work}", lambda: StorageService(rt.bus, root, work))


def storage(**params: Any) -> str | None:
    """Interactive: show the Panel on the Storage tab. Headless: print the usage report,
    clean only what ``clean_leftovers`` / ``clean_caches`` ask for, and return the text."""
    settings = current_settings(**params)
    root, work = store_paths(**params)
    if not is_headless():
        from sdpanel.panels import Panel

        from ._panel_view import show_panel_tab

        panel = Panel()
        tab = getattr(panel, "_sdp_storage", None)
        if tab is not None:  # the shared panel's report dates from its creation: scan again
            tab.refresh()
        # The cell's purpose is this tab; the browser owns the choice from here on.
        show_panel_tab(panel, "storage", "Storage report refreshed")
        return None
    from sdpanel.runtime import get_runtime
    from sdpanel.settings import redact
    from sdpanel.storage import format_report, human_bytes

    os.makedirs(root, exist_ok=True)
    svc = storage_service(root, work)
    rt = get_runtime()
    lines = [format_report(rt.submit(svc.report(), name="storage-report", topic="storage").wait())]
    caches = ["pip", "huggingface"] if settings.clean_caches else []
    if settings.clean_leftovers or caches:
        plan = rt.submit(svc.plan_clean(leftovers=settings.clean_leftovers, caches=caches),
                         name="storage-plan", topic="storage").wait()
        lines += ["", "Clean (" + ", ".join(
            (["leftovers"] if settings.clean_leftovers else []) + caches) + "): " + plan.summary()]
        res = rt.submit(svc.apply_clean(plan), name="storage-clean", topic="storage").wait()
        lines.append(res.summary())
        after = rt.submit(svc.report(), name="storage-report", topic="storage").wait()
        free = after.disks["store"]["free"]
        lines.append(f"Store now {human_bytes(after.store_bytes)}; {human_bytes(free)} free on its disk")
    else:
        lines.append("(no clean: set CLEAN_LEFTOVERS or CLEAN_CACHES to True in the Settings cell)")
    text = redact("\n".join(lines))
    print(text)
    return text
