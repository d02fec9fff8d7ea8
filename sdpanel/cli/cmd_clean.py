"""``sdpanel clean``: preview what would go and how many bytes return; ``--yes`` deletes."""

from __future__ import annotations

import argparse
import re

from ._lazy import choices_from

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """'500M', '2G', '1.5GiB', '1024' -> bytes (binary units)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; write e.g. 500M, 2G or 1.5GiB")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "clean", help="free space: preview by default, --yes to delete",
        description="Choose models by kind, size, age or 'unused'; criteria combine (AND). "
                    "Without --yes nothing changes: the preview lists paths and bytes.")
    p.add_argument("files", nargs="*", metavar="FILE", help="model files to delete")
    p.add_argument("--kind", action="append", choices=choices_from("sdpanel.storage", "kind_ids"),
                   metavar="KIND", help="models of this kind: %(choices)s")
    p.add_argument("--older-than", type=float, metavar="DAYS", help="not modified for DAYS")
    p.add_argument("--larger-than", type=parse_size, metavar="SIZE", help="bigger than SIZE")
    p.add_argument("--unused", action="store_true", help="kinds no linked WebUI sees")
    p.add_argument("--leftovers", action="store_true",
                   help=".part/.aria2 leftovers and broken symlinks in the store")
    p.add_argument("--cache", action="append", choices=choices_from("sdpanel.storage", "cache_dirs", sort=True), default=[],
                   metavar="CACHE", help="also empty this cache: %(choices)s")
    p.add_argument("--yes", action="store_true", help="delete without asking")
    p.add_argument("--storage", metavar="PATH", help="storage root (default: detected)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdpanel.storage import apply_clean, plan_clean

    from .cmd_storage import resolve_store

    root, _ = resolve_store(args.storage)
    if not (args.files or args.kind or args.older_than is not None or args.larger_than is not None
            or args.unused or args.leftovers or args.cache):
        print("Nothing chosen: name files or use --kind/--older-than/--larger-than/--unused/"
              "--leftovers/--cache (see sdpanel clean --help).")
        return 2
    plan = plan_clean(root, kinds=args.kind, files=args.files, larger_than=args.larger_than,
                      older_than_days=args.older_than, unused=args.unused,
                      leftovers=args.leftovers, caches=args.cache)
    print(plan.summary())
    if not args.yes:
        if plan.items:
            print("Preview only: nothing was deleted. Run again with --yes to delete.")
        return 1 if plan.errors else 0
    res = apply_clean(plan)
    print(res.summary())
    return 1 if (res.errors or plan.errors) else 0
