"""Download benchmark: sdpanel's engines against the tools a user would otherwise use.

One file served by the throttled range server running as its own process (per-connection
rate, first-byte latency), two server profiles (uniform; heterogeneous: a quarter of the
connections 10x slower), and per profile: ``curl`` (one stream), raw ``aria2c -x16 -s16 -k1M``,
sdpanel's Python engine and sdpanel's aria2 engine (when importable). Every tool gets a fresh
server so all see the same sequence of fast/slow connections. Prints times and speed ratios
against raw aria2c (raw_time / tool_time: above 1 is faster), the Python engine's peak RSS
and the CPU its progress reporting costs, and writes tests/artifacts/bench_downloads.json.

    python -m tests.benchmarks.bench_downloads --size 256M
    python -m tests.benchmarks.bench_downloads --size 1G --rate 20M --latency 0.05
    python -m tests.benchmarks.bench_downloads --repeat 7 --tools aria2c,python,python@/tmp/old

On a busy machine use ``--repeat`` ≥ 5: the tools alternate round by round, and "paired"
is the median of the per-round ratios, which other load on the machine skews least.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.fixtures.range_server import RangeServerProcess  # noqa: E402

TARGETS = {"python/uniform": 1.0, "python/heterogeneous": 1.2, "aria2-engine/uniform": 0.95,
           "aria2-engine/heterogeneous": 0.95}


def parse_size(text: str, base: int = 1024) -> int:
    """"256M" → 256 MiB (sizes are binary); with base=1000, "20M" → 20 MB (rates)."""
    units = {"K": base, "M": base**2, "G": base**3}
    text = text.strip().upper().removesuffix("/S").removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def make_file(path: Path, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 16 << 20))
            f.write(block)
            h.update(block)
            left -= len(block)
    return h.hexdigest()


# ---- child: one sdpanel engine in its own process (clean RSS / CPU figures) ----------
def child(args: argparse.Namespace) -> None:
    from sdpanel.downloads._engine import Transfer
    from sdpanel.runtime import EventBus, ProgressEvent

    bus = EventBus()
    seen: list[Any] = []
    bus.subscribe(lambda ev: seen.append(ev) if len(seen) < 4 else None, topics={"downloads"})
    cost = {"cpu": 0.0, "calls": 0}

    def progress(done: int, total: int | None, speed: float) -> None:
        # What the queue does per update: publish one event on the bus.
        t0 = time.thread_time()
        bus.publish(ProgressEvent("downloads", "bench", done=done, total=total, speed=speed))
        cost["cpu"] += time.thread_time() - t0
        cost["calls"] += 1

    progress(0, None, 0.0)  # warm-up: the first publish imports the settings module
    cost.update(cpu=0.0, calls=0)

    async def run() -> dict[str, Any]:
        out = Path(args.out)
        t = Transfer(url=args.url, headers={}, part_path=out, size=args.size, sha256=None)
        daemon = None
        if args.child == "python":
            from sdpanel.downloads._python_engine import PythonEngine

            engine: Any = PythonEngine()
        else:
            from sdpanel.downloads._aria2 import Aria2Daemon
            from sdpanel.downloads._aria2_engine import Aria2Engine

            daemon = Aria2Daemon(Path(args.workdir) / "store")
            await daemon.ensure()  # a long-lived daemon in real use: not timed
            engine = Aria2Engine(daemon)
        cpu0, t0 = time.process_time(), time.perf_counter()
        res = await engine.fetch(t, progress, lambda: None)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        await engine.close()
        if daemon is not None:
            await daemon.shutdown()
        # The queue verifies before the rename; an engine that hashed while streaming spares
        # that pass, one that did not (aria2) leaves it to do.
        verify = 0.0
        if res.sha256 is None:
            from sdpanel.downloads._verify import file_sha256

            v0 = time.perf_counter()
            file_sha256(out)
            verify = time.perf_counter() - v0
        return {"seconds": wall, "verify_s": verify, "sha256": res.sha256, "cpu_s": cpu,
                "progress_cpu_s": cost["cpu"], "progress_calls": cost["calls"],
                "stats": getattr(engine, "last_stats", {})}

    report = asyncio.run(run())
    report["rss_mb"] = peak_rss_kb() / 1024
    print("RESULT " + json.dumps(report), flush=True)


def peak_rss_kb() -> int:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so
    a child would report the size of the process that forked it."""
    try:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# ---- parent --------------------------------------------------------------------------
def run_tool(tool: str, url: str, out: Path, size: int, workdir: Path) -> dict[str, Any]:
    tree = ""
    if tool == "curl":
        cmd = ["curl", "-s", "-S", "-f", "-o", str(out), url]
    elif tool == "aria2c":
        cmd = ["aria2c", "-x16", "-s16", "-k1M", "--file-allocation=none", "-d", str(out.parent),
               "-o", out.name, "--allow-overwrite=true", "--auto-file-renaming=false",
               "--console-log-level=warn", "--summary-interval=0", "--download-result=hide",
               url]
    else:
        # "python@DIR": the Python engine of another checkout (before/after comparisons).
        tool, _, tree = tool.partition("@")
        cmd = [sys.executable, "-m", "tests.benchmarks.bench_downloads", "--child", tool,
               "--url", url, "--out", str(out), "--size", str(size), "--workdir", str(workdir)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tree or REPO, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    if tool in ("curl", "aria2c"):
        return {"seconds": wall}
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[7:])


def bench_one(tool: str, profile: str, i: int, root: Path, work: Path, size: int, rate: int,
              args: argparse.Namespace) -> dict[str, Any]:
    """One run of ``tool`` against a fresh server process; adds what the server saw and the
    CPU the server spent (a Python server on a small machine can be the bottleneck)."""
    out = work / "dl" / f"{tool.replace('/', '_')}-{profile}-{i}.bin"
    out.parent.mkdir(exist_ok=True)
    out.unlink(missing_ok=True)
    with RangeServerProcess(root, rate=rate, latency=args.latency, profile=profile,
                            slow_fraction=args.slow_fraction,
                            slow_factor=args.slow_factor) as srv:
        assert srv.proc is not None
        cpu0 = _proc_cpu(srv.proc.pid)
        r = run_tool(tool, srv.url("model.bin"), out, size, work)
        r["server_cpu_s"] = _proc_cpu(srv.proc.pid) - cpu0
        log = srv.requests("model.bin")
    r["ok"] = sha256_of(out) == args.expected
    sent = sum(x["bytes_sent"] for x in log)
    r["requests"] = len(log)
    r["slow_share"] = sum(x["bytes_sent"] for x in log if x["slow"]) / max(1, sent)
    r["overhead_bytes"] = sent - size
    out.unlink(missing_ok=True)
    return r


def _proc_cpu(pid: int) -> float:
    """User+system CPU seconds of a process (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="256M", help="file size (e.g. 256M, 1G); default 256M")
    ap.add_argument("--rate", default="20M", help="bytes/s per connection, decimal (default 20M = 20 MB/s)")
    ap.add_argument("--latency", type=float, default=0.05, help="first-byte delay, s")
    ap.add_argument("--slow-fraction", type=float, default=0.25)
    ap.add_argument("--slow-factor", type=float, default=10.0)
    ap.add_argument("--profiles", default="uniform,heterogeneous")
    ap.add_argument("--tools", default="curl,aria2c,python,aria2-engine",
                    help="comma-separated; python@DIR runs the Python engine of the checkout "
                    "at DIR (before/after comparisons)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds; each runs every tool once, in turn (medians reported)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--out-json", default=str(REPO / "tests" / "artifacts" /
                                             "bench_downloads.json"))
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        args.size = int(args.size)
        child(args)
        return 0

    size, rate = parse_size(args.size), parse_size(args.rate, 1000)
    tools = [t for t in args.tools.split(",") if t]
    if "aria2-engine" in tools:
        try:
            import sdpanel.downloads._aria2_engine  # noqa: F401
        except ImportError:
            print("sdpanel aria2 engine not available: skipped")
            tools.remove("aria2-engine")
    for exe in ("curl", "aria2c"):
        if exe in tools and shutil.which(exe) is None:
            print(f"{exe} not installed: skipped")
            tools.remove(exe)
    own = args.workdir is None
    work = Path(args.workdir or tempfile.mkdtemp(prefix="d1-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    root = work / "srv"
    root.mkdir(exist_ok=True)
    print(f"making a {size / (1 << 20):.0f} MiB file ...", flush=True)
    args.expected = make_file(root / "model.bin", size)
    results: list[dict[str, Any]] = []
    try:
        for profile in args.profiles.split(","):
            runs: dict[str, list[dict[str, Any]]] = {tool: [] for tool in tools}
            # Rounds alternate the tools (A/B/A/B...), so load from other work on the machine
            # hits every tool alike instead of one tool's whole series.
            for i in range(args.repeat):
                for tool in tools:
                    r = bench_one(tool, profile, i, root, work, size, rate, args)
                    runs[tool].append(r)
                    print(f"  {profile:13} {tool:13} {r['seconds']:7.2f} s  ok={r['ok']}  "
                          f"server CPU {r['server_cpu_s']:.2f} s", flush=True)
            for tool in tools:
                med = statistics.median(x["seconds"] for x in runs[tool])
                best = dict(min(runs[tool], key=lambda x: abs(x["seconds"] - med)))
                best.update(tool=tool, profile=profile, seconds=med,
                            all_seconds=[round(x["seconds"], 3) for x in runs[tool]])
                results.append(best)
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"{size / (1 << 20):.0f} MiB, {rate / 1e6:.0f} MB/s per connection, "
          f"{args.latency * 1000:.0f} ms first byte; ratio = raw aria2c time / tool time (of medians; "
          "paired: median of per-round ratios); "
          "+verify = time until a verified file (sdpanel engines)")
    print(f"{'profile':13} {'tool':13} {'time s':>8} {'MB/s':>8} {'ratio':>6} {'paired':>6} {'slow%':>6} "
          f"{'reqs':>5} {'+verify':>8}  notes")
    verdicts: dict[str, Any] = {}
    for r in results:
        base = next((x for x in results if x["profile"] == r["profile"]
                     and x["tool"] == "aria2c"), None)
        r["ratio_vs_aria2c"] = base["seconds"] / r["seconds"] if base else None
        # Per round (same load on the machine for both): steadier than a ratio of medians.
        r["paired_ratio"] = statistics.median(
            a / b for a, b in zip(base["all_seconds"], r["all_seconds"], strict=True)
        ) if base else None
        notes = []
        if "rss_mb" in r:
            notes.append(f"peak RSS {r['rss_mb']:.0f} MB")
        if "cpu_s" in r:
            notes.append(f"CPU {100 * r['cpu_s'] / r['seconds']:.0f}% of a core, progress "
                         f"{100 * r['progress_cpu_s'] / r['seconds']:.2f}% "
                         f"({r['progress_calls']} updates)")
        if r.get("stats", {}).get("splits") is not None:
            notes.append(f"{r['stats']['splits']} splits")
        ratio = f"{r['ratio_vs_aria2c']:.2f}" if r["ratio_vs_aria2c"] else "-"
        paired = f"{r['paired_ratio']:.2f}" if r["paired_ratio"] else "-"
        # Time to a verified file: the engine's time plus the hash pass it left to the queue.
        verify = f"{r['seconds'] + r['verify_s']:.2f}" if "verify_s" in r else "-"
        print(f"{r['profile']:13} {r['tool']:13} {r['seconds']:8.2f} "
              f"{size / r['seconds'] / 1e6:8.1f} {ratio:>6} {paired:>6} {100 * r['slow_share']:5.1f}% "
              f"{r['requests']:5d} {verify:>8}  server CPU {100 * r['server_cpu_s'] / r['seconds']:.0f}%"
              f"{'; ' if notes else ''}{'; '.join(notes)}"
              f"{'' if r['ok'] else '  SHA MISMATCH'}")
        key = f"{r['tool']}/{r['profile']}"
        if key in TARGETS and r["ratio_vs_aria2c"] is not None:
            verdicts[key] = {"ratio": r["ratio_vs_aria2c"], "paired": r["paired_ratio"],
                             "target": TARGETS[key],
                             "met": r["ratio_vs_aria2c"] >= TARGETS[key]}
        if r["tool"] == "python":
            verdicts[f"python/{r['profile']}/rss"] = {"mb": r["rss_mb"], "target": 200,
                                                      "met": r["rss_mb"] < 200}
        if "progress_cpu_s" in r:
            share = r["progress_cpu_s"] / r["seconds"]
            verdicts[f"{key}/progress_cpu"] = {"share": share, "target": 0.05,
                                               "met": share < 0.05}
    print()
    for key, v in verdicts.items():
        print(f"  {key:40} {'met' if v['met'] else 'NOT met'}  "
              + ", ".join(f"{k}={v[k]:.3g}" for k in v if k != "met"))
    out_json = Path(args.out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps({
        "size": size, "rate": rate, "latency": args.latency, "slow_fraction": args.slow_fraction,
        "slow_factor": args.slow_factor, "repeat": args.repeat, "machine": {
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "load": os.getloadavg()},
        "results": results, "targets": verdicts,
    }, indent=2))
    print(f"\nwrote {out_json}")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
