"""``sdpanel search QUERY [--type T] [--base B] [--sort S] [--period P] [--nsfw] [--json]``:
search CivitAI. ``#tag`` searches a tag, ``@user`` a creator."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from ._lazy import choices_from

if TYPE_CHECKING:
    from sdpanel.sources import SearchPage


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("search", help="search CivitAI models (#tag, @user or text)")
    p.add_argument("query", nargs="?", default="", help="text, #tag or @username")
    p.add_argument("--type", action="append", dest="types", metavar="T",
                   help="model type (repeatable): Checkpoint, LORA, VAE, Controlnet ...")
    p.add_argument("--base", action="append", dest="bases", metavar="B",
                   help='base model (repeatable): "SD 1.5", "SDXL 1.0", Pony, Illustrious, "Flux.1 D"')
    p.add_argument("--sort", choices=choices_from("sdpanel.sources", "SORTS", call=False), metavar="S",
                   help="one of: %(choices)s")
    p.add_argument("--period", choices=choices_from("sdpanel.sources", "PERIODS", call=False), metavar="P",
                   help="one of: %(choices)s")
    p.add_argument("--nsfw", action="store_true", help="include NSFW models")
    p.add_argument("--limit", type=int, default=20, help="results per page (max 100)")
    p.add_argument("--cursor", help="continue from a previous page's cursor")
    p.add_argument("--storage", metavar="PATH", help="storage root (for the response cache)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run)


def summarize(item: dict[str, Any], base_url: str) -> dict[str, Any]:
    versions = item.get("modelVersions") or []
    latest = versions[0] if versions else {}
    files: list[dict[str, Any]] = list(latest.get("files") or [])
    primary: dict[str, Any] = next((f for f in files if f.get("primary")), files[0] if files else {})
    return {
        "id": item.get("id"), "name": item.get("name"), "type": item.get("type"),
        "creator": (item.get("creator") or {}).get("username"), "nsfw": bool(item.get("nsfw")),
        "base_model": latest.get("baseModel"), "version_id": latest.get("id"),
        "version_name": latest.get("name"), "file": primary.get("name"),
        "size": round(float(primary["sizeKB"]) * 1024) if primary.get("sizeKB") is not None else None,
        "downloads": (item.get("stats") or {}).get("downloadCount"),
        "likes": (item.get("stats") or {}).get("thumbsUpCount"),
        "url": f"{base_url.rstrip('/')}/models/{item.get('id')}",
    }


def _query_parts(text: str) -> tuple[str | None, str | None, str | None]:
    """(query, tag, username) from the search box: ``#tag``, ``@user`` or text."""
    text = text.strip()
    if text.startswith("#") and len(text) > 1:
        return None, text[1:], None
    if text.startswith("@") and len(text) > 1:
        return None, None, text[1:]
    return text or None, None, None


def run(args: argparse.Namespace) -> int:
    from sdpanel.runtime import get_runtime
    from sdpanel.settings import redact
    from sdpanel.sources import ResolveContext, SourceError
    from sdpanel.storage import human_bytes

    ctx = ResolveContext.from_settings(storage_root=args.storage)

    query, tag, username = _query_parts(args.query)

    async def search() -> SearchPage:
        try:
            return await ctx.civitai().search(
                query, tag=tag, username=username, types=args.types, base_models=args.bases, sort=args.sort, period=args.period,
                nsfw=True if args.nsfw else None, limit=args.limit, cursor=args.cursor)
        finally:
            await ctx.aclose()

    try:
        page = get_runtime().submit(search(), name="search", topic="models").wait(120)
    except SourceError as exc:
        print(redact(f"error: {exc}"), file=sys.stderr)
        return 1
    from sdpanel.cli.cmd_download import _storage_root
    from sdpanel.sources import HiddenList
    from sdpanel.storage import StorageRoot

    hidden = HiddenList.load(StorageRoot.at(_storage_root(args.storage)))
    rows = [summarize(i, ctx.civitai_base_url) for i in page.items if not hidden.hides(i)]
    if args.json:
        print(json.dumps({"items": rows, "next_cursor": page.next_cursor}, indent=2))
        return 0
    if not rows:
        print("No models found.")
        return 0
    for r in rows:
        size = human_bytes(r["size"]) if r["size"] else "?"
        print(f"{r['id']:>8}  {r['type'] or '':<16} {r['base_model'] or '':<12} {size:>10}  "
              f"{r['name']} by {r['creator']}")
    if page.next_cursor:
        print(f"more: sdpanel search {json.dumps(args.query)} --cursor {page.next_cursor}")
    return 0
