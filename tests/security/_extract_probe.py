"""Run one streamed extraction in a fresh process and report what it cost:
``python -m tests.security._extract_probe FORMAT ARCHIVE DEST`` prints JSON with the error
(or null), the bytes left under DEST and the process's peak memory (VmHWM), so a test can
hold a decompression bomb to bounded memory and an early stop."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

from sdpanel.webuis._extract import ByteQueue, extract_stream


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    fmt, archive, dest = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    q = ByteQueue()

    def feed() -> None:
        with open(archive, "rb") as f:
            while chunk := f.read(1 << 20):
                if not q.put(chunk):
                    break
        q.close()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    error = None
    try:
        extract_stream(fmt, q, dest)  # no limits given: what every caller gets by default
    except Exception as exc:  # noqa: BLE001 - reported to the test
        error = f"{type(exc).__name__}: {exc}"
    written = sum(p.lstat().st_size for p in dest.rglob("*") if p.is_file())
    print(json.dumps({"error": error, "written": written, "peak_rss": _peak_rss(),
                      "pid": os.getpid()}))


if __name__ == "__main__":
    main()
