"""The queue never leaves connections idle while files remain: when a file's connections
run out of work (its last ranges are in flight), the next file starts on each connection
freed, within the same budget (files at once × connections per file). Read from the range
server's request log: what a user's bandwidth would show."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from sdpanel.downloads import DownloadQueue, DownloadSpec
from tests.fixtures.range_server import RangeServer

MiB = 1 << 20


def _in_flight_peak(log: list[dict[str, Any]]) -> int:
    edges = sorted([(r["t"], 1) for r in log] + [(r["t_end"], -1) for r in log])
    peak = now = 0
    for _t, step in edges:
        now += step
        peak = max(peak, now)
    return peak


async def test_next_file_takes_the_connections_a_finishing_file_frees(tmp_path: Path) -> None:
    files = {f"lora-{i}.bin": os.urandom(3 * MiB + i) for i in range(3)}
    with RangeServer(rate=1_500_000) as srv:
        for name, data in files.items():
            srv.add_file(name, data)
        q = DownloadQueue(tmp_path / "store", engine="python", max_concurrent=1, connections=4)
        try:
            ids = await q.add([DownloadSpec(srv.url(n), kind="loras") for n in files])
            items = await q.wait(ids, timeout=180)
        finally:
            await q.close()
        log = [r for r in srv.requests(method="GET") if r.get("start") is not None
               and r.get("t_end") is not None]
    for item, data in zip(items, files.values(), strict=True):
        assert item["state"] == "done", item["error"]
        assert item["sha256"] == hashlib.sha256(data).hexdigest()
    by_file = {n: [r for r in log if r["name"] == n] for n in files}
    names = list(files)
    for before, after in zip(names, names[1:], strict=False):
        last_byte = max(r["t_end"] for r in by_file[before])
        first_range = min(r["t"] for r in by_file[after])
        # The next file's ranges began while the previous one's last ranges were in flight
        # (before: the queue waited for the file to finish and verify, connections idle).
        assert first_range < last_byte, f"{after} waited for {before} to finish"
    # ... and never beyond the budget: 1 file at once × 4 connections.
    assert _in_flight_peak(log) <= 4
