"""``sdpanel updates [--json]``: CivitAI models in the store that have a newer version (one
API request per model; models without a CivitAI sidecar are not asked about)."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("updates", help="list installed CivitAI models that have a newer version")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.add_argument("--storage", metavar="PATH", help="storage root (default: detected)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdpanel.cli.cmd_download import _storage_root
    from sdpanel.runtime import get_runtime
    from sdpanel.settings import redact
    from sdpanel.sources import LocalIndex, ResolveContext, SourceError
    from sdpanel.storage import StorageRoot

    root = StorageRoot.at(_storage_root(args.storage))
    ctx = ResolveContext.from_settings(storage_root=root.path)

    async def check() -> list[dict[str, object]]:
        index = LocalIndex(root)
        try:
            await index.ascan()
            found = await index.check_updates(ctx.civitai())
        finally:
            await ctx.aclose()
        return [{**m.to_dict(), "latest_version_name": m.latest_version_name,
                 "version_name": (m.sidecar or {}).get("version_name")} for m in found]

    try:
        rows = get_runtime().submit(check(), name="updates", topic="models").wait(300)
    except SourceError as exc:
        print(redact(f"error: {exc}"), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        print("Every CivitAI model in the store is at its newest version.")
        return 0
    for r in rows:
        print(f"{r['name']}: {r['version_name'] or r['version_id']} → {r['latest_version_name'] or r['latest_version_id']}"
              f"  (sdpanel download urn:air:any:any:civitai:{r['model_id']}@{r['latest_version_id']})")
    return 0
