"""Cell 3, Download: the selection of cell 2 (``MODEL_PRESETS`` + ``MODEL_LINKS``) resolved
through :mod:`sdpanel.sources` into download specs and queued on the process's one download
queue (the one the Panel's Downloads tab shows).

Interactive, the cell returns at once and shows the Panel on its Downloads tab; a link that
does not resolve shows there as a notice. Headless (papermill), it blocks until every file
is finished, prints one line per file (name, size, state, verified sha256 prefix, or the
reason it failed) and, if any failed, ends with one clean sentence instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._settings_cell import current_settings, is_headless

__all__ = ["DownloadCellError", "download", "download_summary"]


class DownloadCellError(RuntimeError):
    """Some files were not downloaded. IPython shows only the message (no traceback: the
    summary above it already says which file and why)."""

    def _render_traceback_(self) -> list[str]:
        return [f"DownloadCellError: {self}"]


Selection = list[tuple[str, str]]  # ("preset" | "link", id or pasted text)


def selection(settings: Any) -> Selection:
    return [("preset", p) for p in settings.model_presets] + [("link", u) for u in settings.model_links]


async def resolve_selection(chosen: Selection, settings: Any, root: Any) -> tuple[list[Any], list[tuple[str, str]]]:
    """Download specs for the selection, and ``(what, why)`` for entries that did not resolve."""
    from sdpanel.settings import redact
    from sdpanel.sources import ResolveContext, SourceError, preset_spec, resolve_link

    ctx = ResolveContext.from_settings(settings, storage_root=root.path)
    specs: list[Any] = []
    problems: list[tuple[str, str]] = []
    try:
        for how, text in chosen:
            try:
                specs.append(preset_spec(text, ctx) if how == "preset" else await resolve_link(text, ctx))
            except (SourceError, ValueError, KeyError) as exc:
                problems.append((redact(text)[:120], redact(str(exc)) or type(exc).__name__))
    finally:
        await ctx.aclose()
    return specs, problems


def download_summary(items: list[dict[str, Any]], problems: Sequence[tuple[str, str]] = ()) -> str:
    """The per-file summary the cell prints: :func:`sdpanel.downloads.summarize` (imported
    late: the cells package loads with the standard library only)."""
    from sdpanel.downloads import summarize

    return summarize(items, problems)


def download(**params: Any) -> list[dict[str, Any]] | None:
    """Cell 3. Interactive: queue the selection and show the Panel on the Downloads tab.
    Headless: block until done, print the per-file summary and return the items; raise
    :class:`DownloadCellError` (one sentence) if any file failed."""
    from sdpanel.downloads import shared_queue
    from sdpanel.platforms import detect_platform
    from sdpanel.runtime import get_runtime
    from sdpanel.storage import StorageRoot

    settings = current_settings(**params)
    chosen = selection(settings)
    if not chosen:
        if not is_headless():  # models picked on the Models tab are queued already: show them
            _show_panel()
            return None
        print("Downloads: nothing selected (set MODEL_PRESETS or MODEL_LINKS in the Settings cell, "
              "or pick models in the Panel's Models tab).")
        return None
    root = StorageRoot.at(settings.storage or detect_platform().storage_root).ensure()
    rt = get_runtime()
    queue = shared_queue(root, runtime=rt, settings=settings)
    if not is_headless():
        # Panel first: its Downloads tab subscribes to the bus when attached, so a link that
        # fails to resolve a moment later still reaches it as a notice.
        _show_panel()
        rt.submit(_queue_in_background(queue, chosen, settings, root), name="download-cell", topic="downloads")
        return None

    print(f"Downloads: resolving {len(chosen)} selected model{'s' if len(chosen) != 1 else ''} "
          f"into {root.path} …", flush=True)
    try:
        specs, problems = rt.submit(resolve_selection(chosen, settings, root), name="download-cell-resolve",
                                    topic="downloads").wait()
        items = rt.submit(_add_and_wait(queue, specs), name="download-cell", topic="downloads").wait()
    except Exception as exc:  # noqa: BLE001 - e.g. the journal is busy: one clean sentence
        from sdpanel.settings import redact

        raise DownloadCellError(redact(str(exc)) or type(exc).__name__) from None
    print(download_summary(items, problems))
    failures = [(i["name"], i.get("error") or f"ended {i['state']}") for i in items if i["state"] != "done"]
    failures += list(problems)
    if failures:
        raise DownloadCellError(failure_sentence(failures, len(items) + len(problems)))
    return items


def failure_sentence(failures: Sequence[tuple[str, str]], total: int) -> str:
    """The cell's last line: how many failed, which, and the first one's cause and fix (the
    reasons say what to do), so a single problem needs no scrolling back."""
    from sdpanel.settings import redact

    names = ", ".join(n for n, _ in failures[:3]) + (f" and {len(failures) - 3} more" if len(failures) > 3 else "")
    reason = " ".join(failures[0][1].split()).removeprefix("not queued: ").rstrip(".")
    rest = "; the other reasons are listed above" if len(failures) > 1 else ""
    return redact(f"{len(failures)} of {total} downloads failed ({names}): {reason}{rest}.")


async def _add_and_wait(queue: Any, specs: list[Any]) -> list[dict[str, Any]]:
    if not specs:
        return []
    ids = await queue.add(specs)
    # A twin left paused by an earlier session would never finish here: resume it.
    for item in queue.items():
        if item["id"] in ids and item["state"] == "paused":
            await queue.resume(item["id"])
    return list(await queue.wait(ids))


async def _queue_in_background(queue: Any, chosen: Selection, settings: Any, root: Any) -> None:
    from sdpanel.runtime import ErrorEvent

    specs, problems = await resolve_selection(chosen, settings, root)
    if specs:
        await queue.add(specs)
    for what, why in problems:
        # Shown on the Downloads tab as a notice (it belongs to no row).
        queue.bus.publish(ErrorEvent(topic="downloads", key=f"resolve:{what}",
                                     message=f"{what}: not queued. {why}", error_type="resolve"))


def _show_panel() -> None:
    from sdpanel.panels import Panel

    from ._panel_view import show_panel_tab

    # The cell's purpose is this tab; the browser owns the choice from here on.
    show_panel_tab(Panel(), "downloads", "Downloads started")
