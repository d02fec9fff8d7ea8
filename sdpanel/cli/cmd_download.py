"""``sdpanel download URL [URL ...] [--kind K] [--to DIR] [--sha256 H] [--jobs N]
[--engine auto|aria2|python]``.

Resolves each link like the Models tab does (CivitAI / Hugging Face pages and download
URLs, AIRs, presets, plain URLs), downloads them through the journalled queue (``--jobs``
files at once) and exits 0 only when every file is verified under its final name;
otherwise prints one line per failure with the reason.
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
    p.add_argument("url", nargs="+", help="CivitAI/Hugging Face links, AIRs, preset:IDs or direct URLs")
    p.add_argument("--kind", help="model kind: decides the store folder (checkpoints, loras ...)")
    p.add_argument("--to", metavar="DIR", help="target folder instead of the kind's store folder")
    p.add_argument("--sha256", metavar="HEX", help="expected SHA-256 of the file")
    p.add_argument("--name", help="file name to save as")
    p.add_argument("--engine", choices=("auto", "aria2", "python"), help="byte mover (default: setting)")
    p.add_argument("--storage", metavar="PATH", help="storage root (default: detected)")
    p.add_argument("--connections", type=int, help="parallel connections per file")
    p.add_argument("--jobs", type=int, default=1, help="files downloading at once (default 1)")
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
    if not 1 <= args.jobs <= 64:
        return _fail("--jobs must be between 1 and 64")
    if len(args.url) > 1 and (args.sha256 or args.name):
        return _fail("--sha256 and --name name one file: give a single URL with them")
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
        specs = await asyncio.gather(*(resolve_link(u, ctx, kind=args.kind) for u in args.url))
    except SourceError as exc:
        return _fail(str(exc))
    finally:
        await ctx.aclose()
    for spec in specs:
        if args.to:
            spec.folder = str(Path(args.to).expanduser().resolve())
    spec = specs[0]
    if args.sha256:
        if spec.sha256 and spec.sha256.lower() != args.sha256.lower():
            return _fail(f"--sha256 differs from the source's published hash {spec.sha256[:12]}…: "
                         "check which file you meant")
        spec.sha256 = args.sha256.lower()
    if args.name:
        spec.filename = args.name
    # Its own journal: the notebook's queue may be running on the same store right now.
    queue = DownloadQueue(root, max_concurrent=args.jobs, journal="downloads-cli",
                          engine=args.engine or settings.download_engine,
                          connections=args.connections or settings.connections_per_file)
    try:
        try:
            ids = await queue.add(specs)
        except JournalBusy as exc:
            return _fail(str(exc))
        items = await queue.wait(ids)
    finally:
        await queue.close(stop_idle_daemon=True)
    code = 0
    for item in items:
        if item["state"] != "done" or not item["sha256"] or not item["path"]:
            code = _fail(item["error"] or f"{item['name']}: download ended {item['state']}")
            continue
        size = Path(item["path"]).stat().st_size
        print(f"{item['path']}  {human_bytes(size)}  sha256 {item['sha256']}")
    return code
