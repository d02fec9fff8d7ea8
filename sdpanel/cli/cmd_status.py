"""``sdpanel status [--json] [--storage PATH]``: platform, system, storage, processes."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("status", help="show platform, GPU, disk and sdpanel processes")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.add_argument("--storage", metavar="PATH", help="storage root (default: detected)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdpanel.status import format_status, gather_status

    status = gather_status(args.storage)
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 0
