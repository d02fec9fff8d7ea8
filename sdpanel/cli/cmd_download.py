"""``sdpanel download URL [--kind K] [--to DIR] [--sha256 H] [--engine auto|aria2|python]``.

Resolves the link like the Models tab does (CivitAI / Hugging Face pages and download
URLs, AIRs, presets, plain URLs), downloads it through the journalled queue and exits 0
only for a verified file under its final name; otherwise prints one line with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from pathlib import Path

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("download", help="download a model link into the store, verified")
    p.add_argument("url", help="a CivitAI/Hugging Face link, AIR, preset:ID or direct URL")
    p.add_argument("--kind", help="model kind: decides the store folder (checkpoints, loras ...)")
    p.add_argument("--to", metavar="DIR", help="target folder instead of the kind's store folder")
    p.add_argument("--sha256", metavar="HEX", help="expected SHA-256 of the file")
    p.add_argument("--name", help="file name to save as")
    p.add_argument("--engine", choices=("auto", "aria2", "python"), help="byte mover (default: setting)")
    p.add_argument("--storage", metavar="PATH", help="storage root (default: detected)")
    p.add_argument("--connections", type=int, help="parallel connections per file")
    p.set_defaults(func=run)


def _storage_root(arg: str | None) -> Path:
    if arg:
        return Path(arg).expanduser().resolve()
    from sdpanel.platforms import detect_platform

    return Path(detect_platform().storage_root)


def _fail(message: str) -> int:
    from sdpanel.settings import redact

    print(redact(f"error: {message}").splitlines()[0], file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    from sdpanel.storage import kind_ids

    if args.kind and args.kind not in kind_ids():
        return _fail(f"unknown kind {args.kind!r}; use one of: {', '.join(kind_ids())}")
    if args.sha256 and not _SHA256.match(args.sha256):
        return _fail("--sha256 must be 64 hexadecimal characters")
    if args.connections is not None and not 1 <= args.connections <= 16:
        return _fail("--connections must be between 1 and 16")
    return asyncio.run(_download(args))


async def _download(args: argparse.Namespace) -> int:
    from sdpanel.downloads import DownloadQueue, JournalBusy
    from sdpanel.settings import load_settings
    from sdpanel.sources import ResolveContext, SourceError, resolve_link
    from sdpanel.storage import StorageRoot, human_bytes

    root = StorageRoot.at(_storage_root(args.storage)).ensure()
    settings = load_settings(root.path)
    ctx = ResolveContext.from_settings(settings, storage_root=root.path)
    try:
        spec = await resolve_link(args.url, ctx, kind=args.kind)
    except SourceError as exc:
        return _fail(str(exc))
    finally:
        await ctx.aclose()
    if args.to:
        spec.folder = str(Path(args.to).expanduser().resolve())
    if args.sha256:
        if spec.sha256 and spec.sha256.lower() != args.sha256.lower():
            return _fail(f"--sha256 differs from the source's published hash {spec.sha256[:12]}…: "
                         "check which file you meant")
        spec.sha256 = args.sha256.lower()
    if args.name:
        spec.filename = args.name
    # Its own journal: the notebook's queue may be running on the same store right now.
    queue = DownloadQueue(root, max_concurrent=1, journal="downloads-cli",
                          engine=args.engine or settings.download_engine,
                          connections=args.connections or settings.connections_per_file)
    try:
        try:
            [item_id] = await queue.add(spec)
        except JournalBusy as exc:
            return _fail(str(exc))
        [item] = await queue.wait([item_id])
    finally:
        await queue.close(stop_idle_daemon=True)
    if item["state"] != "done" or not item["sha256"] or not item["path"]:
        return _fail(item["error"] or f"download ended {item['state']}")
    size = Path(item["path"]).stat().st_size
    print(f"{item['path']}  {human_bytes(size)}  sha256 {item['sha256']}")
    return 0
