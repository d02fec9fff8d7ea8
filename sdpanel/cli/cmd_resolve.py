"""``sdpanel resolve LINK [--kind K] [--json]``: show what a pasted link downloads
(file, kind, size, sha256) without downloading it. Bad input: one line and exit 1."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("resolve", help="resolve a CivitAI/Hugging Face link, AIR, preset:ID or URL")
    p.add_argument("link", help="a model page, download URL, AIR, owner/repo/file, preset:ID or URL")
    p.add_argument("--kind", help="override the model kind (checkpoints, loras, vae ...)")
    p.add_argument("--storage", metavar="PATH", help="storage root (for the response cache)")
    p.add_argument("--json", action="store_true", help="print the download spec as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sdpanel.settings import redact
    from sdpanel.sources import ResolveContext, SourceError, resolve_link_sync
    from sdpanel.storage import human_bytes, kind_ids

    if args.kind and args.kind not in kind_ids():
        print(f"error: unknown kind {args.kind!r}; use one of: {', '.join(kind_ids())}", file=sys.stderr)
        return 1
    try:
        spec = resolve_link_sync(args.link, ResolveContext.from_settings(storage_root=args.storage),
                                 kind=args.kind)
    except SourceError as exc:
        print(redact(f"error: {exc}").splitlines()[0], file=sys.stderr)
        return 1
    if args.json:
        data = spec.to_public_dict()
        print(redact(json.dumps(data, indent=2, default=str)))
        return 0
    meta = spec.metadata
    lines = [
        ("file", spec.filename or "(from the server)"), ("kind", spec.kind), ("source", spec.source),
        ("size", human_bytes(spec.size) if spec.size else "unknown"), ("sha256", spec.sha256 or "unknown"),
        ("url", spec.url),
    ]
    for key in ("model_name", "version_name", "base_model", "creator", "repo_id", "commit", "source_url"):
        if meta.get(key):
            lines.append((key.replace("_", " "), str(meta[key])))
    if meta.get("trained_words"):
        lines.append(("trained words", ", ".join(map(str, meta["trained_words"]))))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(redact(f"{key:<{width}}  {value}"))
    return 0
