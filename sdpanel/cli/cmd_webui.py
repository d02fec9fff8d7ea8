"""``sdpanel install|launch|stop|ps|logs``: WebUIs from a shell.

    sdpanel install comfyui [--from URL] [--force]
    sdpanel launch comfyui [--tunnel cloudflared ...] [--wait] [--gpu 0] [--port 8188]
    sdpanel update comfyui [--no-extensions]     (fast-forward, local changes kept)
    sdpanel switch comfyui v0.3.64               (a tag, branch or commit)
    sdpanel stop comfyui | aria2
    sdpanel ps [--json]
    sdpanel logs comfyui [-n 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from sdpanel.runtime import EventBus, LogEvent, ProgressEvent

from ._lazy import choices_from

ARIA2 = "aria2"  # `sdpanel stop aria2`: the download daemon, not a WebUI


def _service(args: argparse.Namespace, bus: EventBus | None = None) -> Any:
    from sdpanel.cli.cmd_storage import resolve_store
    from sdpanel.webuis import WebUIService

    root, _ = resolve_store(args.storage)
    return WebUIService(root, bus or EventBus(), webuis_dir=args.webuis_dir)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", metavar="PATH", help="storage root (default: detected)")
    p.add_argument("--webuis-dir", metavar="PATH",
                   help="where WebUIs are installed (default: $SDPANEL_WEBUIS_DIR or <work dir>/webuis)")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    names = choices_from("sdpanel.webuis", "webuis")
    p = subparsers.add_parser("install", help="install a WebUI (package archive, else git)")
    p.add_argument("webui", choices=names, metavar="WEBUI", help="one of: %(choices)s")
    p.add_argument("--from", dest="source", metavar="URL",
                   help="a package archive (.zip/.tar.zst/.tar.lz4) or a git repository (URL[#ref]) to install from")
    p.add_argument("--force", action="store_true", help="reinstall over an existing install")
    p.add_argument("--no-extensions", action="store_true", help="skip the default extensions")
    _common(p)
    p.set_defaults(func=run_install)

    p = subparsers.add_parser("launch", help="start an installed WebUI (optionally with public tunnels)")
    p.add_argument("webui", choices=names, metavar="WEBUI", help="one of: %(choices)s")
    p.add_argument("--tunnel", nargs="+", default=[], metavar="TOOL",
                   choices=choices_from("sdpanel.webuis", "tunnel_table", extra=("none",)),
                   help="cloudflared, ngrok, zrok, localtunnel, pinggy (always behind a login); "
                        "put WEBUI first: `sdpanel launch comfyui --tunnel cloudflared ngrok`")
    p.add_argument("--wait", action="store_true", help="wait until it answers, then print its links")
    p.add_argument("--gpu", type=int, default=None, help="GPU index (CUDA_VISIBLE_DEVICES)")
    p.add_argument("--port", type=int, default=None, help="preferred port (taken: the next free one)")
    p.add_argument("--args", default="", help="extra WebUI arguments, quoted")
    p.add_argument("--cpu", action="store_true", help="run without a GPU")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for ready")
    _common(p)
    p.set_defaults(func=run_launch)

    p = subparsers.add_parser("update", help="update a WebUI and its extensions (fast-forward, local changes kept)")
    p.add_argument("webui", choices=names, metavar="WEBUI", help="one of: %(choices)s")
    p.add_argument("--no-extensions", action="store_true", help="leave the extensions as they are")
    _common(p)
    p.set_defaults(func=run_update)

    p = subparsers.add_parser("switch", help="switch a WebUI to a tag, branch or commit (local changes kept)")
    p.add_argument("webui", choices=names, metavar="WEBUI", help="one of: %(choices)s")
    p.add_argument("ref", help="tag, branch or commit")
    _common(p)
    p.set_defaults(func=run_update)

    p = subparsers.add_parser("stop", help="stop a running WebUI (TERM, then KILL), or aria2: the download daemon")
    # aria2c runs detached so downloads outlive a kernel; this is how a user stops it.
    p.add_argument("webui", choices=choices_from("sdpanel.webuis", "webuis", extra=[ARIA2]),
                   metavar="WEBUI", help="one of: %(choices)s")
    _common(p)
    p.set_defaults(func=run_stop)

    p = subparsers.add_parser("ps", help="list WebUI processes")
    p.add_argument("--json", action="store_true")
    _common(p)
    p.set_defaults(func=run_ps)

    p = subparsers.add_parser("logs", help="show the last lines of a WebUI's log")
    p.add_argument("webui", choices=names, metavar="WEBUI", help="one of: %(choices)s")
    p.add_argument("-n", "--lines", type=int, default=100)
    _common(p)
    p.set_defaults(func=run_logs)


def _printer(event: Any) -> None:
    if isinstance(event, LogEvent):
        print(event.message, file=sys.stderr, flush=True)
    elif isinstance(event, ProgressEvent) and event.total:
        print(f"{event.message}: {event.done * 100 // event.total}%", file=sys.stderr, flush=True)


def run_install(args: argparse.Namespace) -> int:
    bus = EventBus()
    bus.subscribe(_printer, topics={"webui"})
    svc = _service(args, bus)
    res = asyncio.run(svc.install(args.webui, source=args.source, replace=args.force,
                                  extensions=not args.no_extensions))
    print(f"installed {res.webui} at {res.path} ({res.method}, {res.version or 'unversioned'}, "
          f"{res.seconds:.1f}s)")
    for note in res.notes:
        print(f"  {note}")
    return 0


def run_update(args: argparse.Namespace) -> int:
    """``update`` and ``switch``: one line per checkout moved; exit 1 when the WebUI's own
    move was refused (an extension's refusal is reported, not fatal)."""
    ref = getattr(args, "ref", None)
    results = asyncio.run(_service(args).update(args.webui, ref=ref,
                                                extensions=not getattr(args, "no_extensions", False)))
    for r in results:
        print(r.line(), file=sys.stdout if r.ok else sys.stderr)
    return 0 if results[0].ok else 1


def run_launch(args: argparse.Namespace) -> int:
    svc = _service(args)

    async def go() -> Any:
        return await svc.launch(args.webui, gpu=args.gpu, port=args.port, args=args.args,
                                tunnels=args.tunnel, wait=args.wait, cpu=True if args.cpu else None,
                                ready_timeout=args.timeout)

    res = asyncio.run(go())
    print(res.summary())
    return 1 if res.errors else 0


def run_stop(args: argparse.Namespace) -> int:
    if args.webui == ARIA2:
        return _stop_aria2(args)
    stopped = asyncio.run(_service(args).stop(args.webui))
    print(f"{args.webui}: {'stopped' if stopped else 'was not running'}")
    return 0


def _stop_aria2(args: argparse.Namespace) -> int:
    from sdpanel.cli.cmd_storage import resolve_store
    from sdpanel.downloads import Aria2Daemon

    root, _ = resolve_store(args.storage)
    daemon = Aria2Daemon(root)
    running = daemon.running_pid()
    if running is None:
        print("aria2: was not running")
        return 0
    asyncio.run(daemon.shutdown())
    print(f"aria2: stopped (pid {running}); unfinished downloads resume when the queue restarts")
    return 0


def run_ps(args: argparse.Namespace) -> int:
    rows = _service(args).ps()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no WebUI processes")
    for r in rows:
        print(f"{r['name']:<14} {r['state']:<8} pid {r['pid']:<8} http://127.0.0.1:{r['port']}  log {r['log']}")
    return 0


def run_logs(args: argparse.Namespace) -> int:
    for line in _service(args).logs(args.webui, args.lines):
        print(line)
    return 0
