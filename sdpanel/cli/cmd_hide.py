"""``sdpanel hide [--creator NAME | --model ID] [--undo] [--list]``: creators and models that
search results (CLI and Models tab) leave out, in every session (kept in the store)."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("hide", help="hide a CivitAI creator or model from search results")
    p.add_argument("--creator", metavar="NAME", help="CivitAI user name (with or without @)")
    p.add_argument("--model", type=int, metavar="ID", help="CivitAI model id")
    p.add_argument("--undo", action="store_true", help="show them again (with --creator/--model, or all)")
    p.add_argument("--list", action="store_true", help="print what is hidden")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.add_argument("--storage", metavar="PATH", help="storage root (default: detected)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdpanel.cli.cmd_download import _storage_root
    from sdpanel.sources import HiddenList
    from sdpanel.storage import StorageRoot

    hidden = HiddenList.load(StorageRoot.at(_storage_root(args.storage)))
    if args.undo:
        hidden.unhide(creator=args.creator, model_id=args.model,
                      everything=not (args.creator or args.model is not None))
    elif args.creator or args.model is not None:
        if args.creator:
            hidden.hide_creator(args.creator)
        if args.model is not None:
            hidden.hide_model(args.model)
    elif not args.list:
        print("error: name a --creator or --model to hide, or pass --list", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"creators": sorted(hidden.creators), "models": sorted(hidden.models)}))
        return 0
    if args.list or args.undo:
        if not hidden.count():
            print("Nothing is hidden.")
        for c in sorted(hidden.creators):
            print(f"creator @{c}")
        for mid, name in sorted(hidden.models.items()):
            print(f"model {mid}" + (f"  {name}" if name else ""))
        return 0
    print(f"Hidden from search results ({hidden.count()} rule{'s' if hidden.count() != 1 else ''}); "
          "undo with: sdpanel hide --undo " + (f"--creator {args.creator}" if args.creator else f"--model {args.model}"))
    return 0
