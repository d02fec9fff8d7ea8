"""``sdpanel download URL [URL ...] [--kind K] [--to DIR] [--sha256 H] [--jobs N]
[--engine auto|aria2|python] [--all-versions [--prefer fp16,pruned]] [--link | --force]``.

Resolves each link like the Models tab does (CivitAI / Hugging Face pages and download
URLs, AIRs, presets, plain URLs), downloads them through the journalled queue (``--jobs``
files at once) and exits 0 only when every file is verified under its final name;
otherwise prints one line per failure with the reason.
A file the store already has elsewhere (same sha256 or same CivitAI version) is not
downloaded again: the command says where it is; ``--link`` links it into place,
``--force`` downloads a second copy.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sdpanel.downloads import DownloadSpec
    from sdpanel.storage import StorageRoot

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
    p.add_argument("--all-versions", action="store_true",
                   help="every version of the CivitAI model (one file each, see --prefer)")
    p.add_argument("--prefer", default="fp16,pruned", metavar="PREFS",
                   help="file preferences for --all-versions: fp16|bf16|fp32 and pruned|full (default fp16,pruned)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--link", action="store_true", help="link the store's copy when it already has the file")
    group.add_argument("--force", action="store_true", help="download even when the store already has the file")
    p.set_defaults(func=run, exit_fast=True)  # its children are stopped before it returns


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
    if len(args.url) > 1 and (args.sha256 or args.name or args.all_versions):
        return _fail("--sha256, --name and --all-versions name one link: give a single URL with them")
    if args.all_versions and (args.sha256 or args.name):
        return _fail("--all-versions picks one file per version: drop --sha256 and --name")
    return asyncio.run(_download(args))


async def _download(args: argparse.Namespace) -> int:
    from sdpanel.downloads import DownloadQueue, JournalBusy
    from sdpanel.settings import load_settings
    from sdpanel.sources import (
        FilePrefs,
        ResolveContext,
        SourceError,
        all_version_specs,
        resolve_link,
    )
    from sdpanel.storage import StorageRoot, human_bytes

    root = StorageRoot.at(_storage_root(args.storage)).ensure()
    settings = load_settings(root.path)
    ctx = ResolveContext.from_settings(settings, storage_root=root.path)
    try:
        prefs = FilePrefs.parse(args.prefer)
        specs = list(await asyncio.gather(*(resolve_link(u, ctx, kind=args.kind)
                                            for u in args.url)))
        spec = specs[0]
        if args.all_versions:
            if spec.source != "civitai" or not spec.metadata.get("model_id"):
                return _fail("--all-versions needs a CivitAI model link, download URL or AIR")
            plan = await all_version_specs(ctx, int(spec.metadata["model_id"]), prefs)
            for line in plan.skipped:
                print(f"skipped {line}")
            specs = plan.specs
    except (SourceError, ValueError) as exc:
        return _fail(str(exc))
    finally:
        await ctx.aclose()
    for spec in specs:
        if args.kind:
            spec.kind = args.kind
        if args.to:
            spec.folder = str(Path(args.to).expanduser().resolve())
    if args.sha256:
        if spec.sha256 and spec.sha256.lower() != args.sha256.lower():
            return _fail(f"--sha256 differs from the source's published hash {spec.sha256[:12]}…: "
                         "check which file you meant")
        spec.sha256 = args.sha256.lower()
    if args.name:
        spec.filename = args.name
    specs, kept = await _skip_what_the_store_has(root, specs, link=args.link, force=args.force)
    if not specs:
        return 0
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
    failed = [i for i in items if i["state"] != "done" or not i["sha256"] or not i["path"]]
    for item in items:
        if item not in failed:
            size = Path(item["path"]).stat().st_size
            print(f"{item['path']}  {human_bytes(size)}  sha256 {item['sha256']}")
    for item in failed:
        _fail(item["error"] or f"{item['name']}: download ended {item['state']}")
    return 1 if failed else 0


async def _skip_what_the_store_has(root: StorageRoot, specs: list[DownloadSpec], *, link: bool,
                                   force: bool) -> tuple[list[DownloadSpec], list[Path]]:
    """Specs still to download, and the paths of those the store had (linked with
    ``link``; reported otherwise). ``force`` downloads everything."""
    from sdpanel.settings import redact
    from sdpanel.sources import LocalIndex, SourceError, find_in_store, link_instead

    if force:
        return specs, []
    index = LocalIndex(root)
    await index.ascan()
    todo: list[DownloadSpec] = []
    kept: list[Path] = []
    for spec in specs:
        have = find_in_store(index, spec)
        if have is None:
            todo.append(spec)
        elif link:
            try:
                path = link_instead(root, have)
            except SourceError as exc:
                print(redact(f"error: {exc}"), file=sys.stderr)
                continue
            print(f"{path}  linked to the store's {have.path} ({have.why})")
            kept.append(path)
        else:
            print(redact(f"already in the store: {have.message(root)} (--link to link it, --force "
                         "to download it again)"))
            kept.append(have.path)
    return todo, kept
