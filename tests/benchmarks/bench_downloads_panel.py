"""Kernel CPU spent on download progress in the panel: the Downloads tab's bus subscriber
(events → rows) plus its Publisher flushes (rows → the ``downloads`` trait, serialised to
JSON as a widget comm would), over real downloads from the throttled range server.

Prints the share of one core those two cost during the download (target < 5 %), next to
the whole process's CPU for scale, and writes tests/artifacts/bench_downloads_panel.json.

    python -m tests.benchmarks.bench_downloads_panel --files 3 --size 48M --rate 4M
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.fixtures.range_server import RangeServer  # noqa: E402


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(text[:-1]) * units[text[-1].upper()]) if text[-1].upper() in units else int(text)


class SerialisingPanel:
    """Stands in for the Panel: each trait write is serialised (what a comm send costs)."""

    def __init__(self) -> None:
        self.sent_bytes = 0
        self.cues: list[str] = []

    @contextlib.contextmanager
    def hold_sync(self) -> Iterator[None]:
        yield

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "downloads":
            self.sent_bytes += len(json.dumps(value))
        object.__setattr__(self, name, value)

    def send(self, msg: dict[str, Any]) -> None:
        self.cues.append(msg["cue"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=3)
    ap.add_argument("--size", default="48M")
    ap.add_argument("--rate", default="4M", help="per connection, bytes/s")
    ap.add_argument("--connections", type=int, default=4)
    args = ap.parse_args(argv)

    from sdpanel.downloads import DownloadQueue, DownloadSpec
    from sdpanel.panels._downloads_tab import DownloadsController
    from sdpanel.runtime import get_runtime

    size, rate = _size(args.size), _size(args.rate)
    rt = get_runtime()
    with tempfile.TemporaryDirectory(prefix="bench-dlpanel-") as tmp, RangeServer(rate=rate, latency=0.02) as srv:
        for i in range(args.files):
            srv.add_file(f"model_{i}.bin", (hashlib.sha256(str(i).encode()).digest() * (size // 32 + 1))[:size])
        queue = DownloadQueue(Path(tmp) / "store", rt.bus, engine="python", connections=args.connections,
                              max_concurrent=args.files)
        panel = SerialisingPanel()
        ctl = DownloadsController(panel, lambda: queue)
        ctl.attach()
        specs = [DownloadSpec(url=srv.url(f"model_{i}.bin"), kind="other") for i in range(args.files)]
        cpu0, wall0 = time.process_time(), time.perf_counter()
        items = rt.submit(_run(queue, specs)).wait()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        ctl.publisher.flush()
        ctl.detach()
        rt.submit(queue.close()).wait()
    ok = all(i["state"] == "done" for i in items)
    panel_cpu = ctl.cpu_events + ctl.publisher.cpu_flush
    share = panel_cpu / wall
    result = {
        "files": args.files, "bytes": size * args.files, "seconds": wall, "all_verified": ok,
        "events": ctl.events, "flushes": ctl.publisher.flushes, "trait_bytes_sent": panel.sent_bytes,
        "subscriber_cpu_s": ctl.cpu_events, "publisher_cpu_s": ctl.publisher.cpu_flush,
        "panel_share_of_core": share, "process_cpu_s": cpu, "cues": panel.cues, "target_share": 0.05,
    }
    print(f"{args.files} x {args.size} at {args.rate}/s x {args.connections} conns: {wall:.1f} s, "
          f"all verified: {ok}")
    print(f"  panel: {ctl.events} events, {ctl.publisher.flushes} trait flushes "
          f"({ctl.publisher.flushes / wall:.1f}/s, {panel.sent_bytes / 1024:.0f} KiB serialised)")
    print(f"  panel CPU: subscriber {1000 * ctl.cpu_events:.1f} ms + publisher {1000 * ctl.publisher.cpu_flush:.1f} ms"
          f" = {100 * share:.3f}% of one core (target < 5%: {'met' if share < 0.05 else 'MISSED'})")
    print(f"  whole process (engine, hashing, server in-process): {100 * cpu / wall:.0f}% of one core")
    print(f"  cues: {panel.cues}")
    out = REPO / "tests" / "artifacts" / "bench_downloads_panel.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if ok else 1


async def _run(queue: Any, specs: list[Any]) -> list[dict[str, Any]]:
    ids = await queue.add(specs)
    out: list[dict[str, Any]] = await queue.wait(ids)
    await asyncio.sleep(0.3)  # the queue's idle event (queue_done cue) follows the last file
    return out


if __name__ == "__main__":
    raise SystemExit(main())
