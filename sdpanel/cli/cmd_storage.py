"""``sdpanel storage report|link|unlink|dedup``: the central model store from a shell."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ._lazy import LazyHelp, choices_from

if TYPE_CHECKING:
    from sdpanel.storage import StorageRoot


def resolve_store(arg: str | None) -> tuple[StorageRoot, Path | None]:
    """The store (``--storage`` wins, else the detected platform's) and the work dir."""
    from sdpanel.storage import StorageRoot

    work: Path | None = None
    try:
        from sdpanel.platforms import detect_platform

        info = detect_platform()
        work, default = Path(info.work_dir), Path(info.storage_root)
    except Exception:  # detection must never stop a storage command
        default = Path.cwd() / "storage"
    return StorageRoot.at(arg or default), work


def _add_storage_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", metavar="PATH", help="storage root (default: detected)")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("storage", help="report, link, unlink and deduplicate the model store")
    _add_storage_arg(p)
    # No action: the report (what a user typing `sdpanel storage` wants to see).
    p.set_defaults(func=run_report, json=False, work_dir=None, webui=None)
    sub = p.add_subparsers(dest="storage_command", metavar="ACTION")

    r = sub.add_parser("report", help="bytes per kind, model, WebUI, caches and free space")
    _add_storage_arg(r)
    r.add_argument("--json", action="store_true", help="print the report as JSON")
    r.add_argument("--work-dir", metavar="PATH", help="work dir to include (default: detected)")
    r.add_argument("--webui", nargs=2, action="append", metavar=("NAME", "DIR"), default=None,
                   help="a WebUI install to include (repeatable; default: the linked ones)")
    r.set_defaults(func=run_report)

    for verb, fn, text in (("link", run_link, "make a WebUI see the store"),
                           ("unlink", run_unlink, "give a WebUI back a plain layout")):
        q = sub.add_parser(verb, help=text)
        q.add_argument("webui_dir", metavar="WEBUI_DIR", help="the WebUI's install folder")
        q.add_argument("--webui", required=True, metavar="NAME",
                       help=LazyHelp("which WebUI: {}", choices_from("sdpanel.storage", "webui_ids")))
        _add_storage_arg(q)
        q.set_defaults(func=fn)

    d = sub.add_parser("dedup", help="collapse duplicate files in the store to one copy")
    d.add_argument("--dry-run", action="store_true", help="only show what would be saved")
    _add_storage_arg(d)
    d.set_defaults(func=run_dedup)


def run_report(args: argparse.Namespace) -> int:
    from sdpanel.storage import format_report, usage_report

    root, work = resolve_store(args.storage)
    webuis = [(n, d) for n, d in args.webui] if args.webui else None
    rep = usage_report(root, args.work_dir or work, webuis)
    print(json.dumps(rep.to_dict(), indent=2) if args.json else format_report(rep))
    return 0


def run_link(args: argparse.Namespace) -> int:
    from sdpanel.storage import link_webui

    root, _ = resolve_store(args.storage)
    rep = link_webui(root, args.webui_dir, args.webui)
    print(rep.summary())
    return 0 if rep.ok else 1


def run_unlink(args: argparse.Namespace) -> int:
    from sdpanel.storage import unlink_webui

    root, _ = resolve_store(args.storage)
    rep = unlink_webui(root, args.webui_dir, args.webui)
    print(rep.summary() if rep.removed else f"{args.webui_dir}: nothing of ours to unlink")
    return 0 if rep.ok else 1


def run_dedup(args: argparse.Namespace) -> int:
    from sdpanel.storage import dedup

    root, _ = resolve_store(args.storage)
    rep = dedup(root, dry_run=args.dry_run)
    print(rep.summary())
    return 0 if not rep.errors else 1
