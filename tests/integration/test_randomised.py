"""50 randomised downloads per engine against a range server injecting random faults
(seeded): each ends verified with the exact bytes, or cleanly failed with the reason its
scenario calls for — never a wrong file under a final name."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from pathlib import Path

import pytest

from sdpanel.downloads import Aria2Daemon, DownloadQueue, DownloadSpec
from sdpanel.runtime import ErrorEvent, Event, EventBus
from tests.fixtures.range_server import Fault, RangeServer

ENGINES = ["python"] + (["aria2"] if shutil.which("aria2c") else [])
N = 50
# Transient faults the engines and the queue must ride out.
RANDOM_FAULTS = {"reset": 0.06, "truncate": 0.06, "500": 0.05, "ignore_range": 0.04}
# Deterministic scenarios and the reason they must fail with (None: must succeed).
SCENARIOS: dict[str, str | None] = {
    "ok": None, "ok_no_hash": None, "ok_no_size": None, "missing": "not_found",
    "wrong_hash": "checksum", "html": "html_instead_of_model", "gone": "gone",
}
WEIGHTS = [10, 4, 4, 1, 1, 1, 1]


def payload(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


@pytest.mark.parametrize("engine", ENGINES)
async def test_fifty_random_downloads(tmp_path: Path, engine: str) -> None:
    rng = random.Random(int(os.environ.get("SDPANEL_TEST_SEED", "1234")) + len(engine))
    events: list[Event] = []
    bus = EventBus()
    bus.subscribe(events.append, topics={"downloads"})
    plan: dict[str, tuple[str, bytes]] = {}
    with RangeServer(rate=20_000_000, random_faults=RANDOM_FAULTS, seed=rng.randrange(1 << 30)) as srv:
        specs = []
        for i in range(N):
            scenario = rng.choices(list(SCENARIOS), WEIGHTS)[0]
            name = f"file{i:02d}.bin"
            data = payload(rng, rng.randrange(10_000, 1_500_000))
            plan[name] = (scenario, data)
            sha = hashlib.sha256(data).hexdigest()
            if scenario != "missing":
                srv.add_file(name, data)
            if scenario == "html":
                srv.add_fault(name, Fault("html", times=None))
            if scenario == "gone":
                srv.add_fault(name, Fault("status", times=None, status=410))
            specs.append(DownloadSpec(
                srv.url(name), folder="out", filename=name,
                size=None if scenario == "ok_no_size" else len(data),
                sha256={"ok_no_hash": None, "ok_no_size": None,
                        "wrong_hash": hashlib.sha256(b"other").hexdigest()}.get(scenario, sha),
                priority=rng.randrange(3)))
        q = DownloadQueue(tmp_path / "store", bus, engine=engine, max_concurrent=6, connections=4,
                          retry_backoff=0.02, max_attempts=6)
        try:
            ids = await q.add(specs)
            items = await q.wait(ids, timeout=240)
        finally:
            await q.close()
            if engine == "aria2":
                await Aria2Daemon(tmp_path / "store").shutdown(grace=0.2)
        injected = [r for r in srv.log if r["fault"] in RANDOM_FAULTS]
    assert len(injected) >= 5, "the random faults should really hit"

    out = tmp_path / "store" / "out"
    failures = []
    for item in items:
        scenario, data = plan[item["name"]]
        want = SCENARIOS[scenario]
        if want is None:
            if item["state"] != "done":
                failures.append((item["name"], scenario, item["reason"], item["error"]))
                continue
            assert Path(item["path"]).read_bytes() == data, item["name"]
            assert item["sha256"] == hashlib.sha256(data).hexdigest()
        else:
            assert item["state"] == "failed" and item["reason"] == want, (scenario, item)
            assert item["error"] and not (out / item["name"]).exists()
            assert any(isinstance(e, ErrorEvent) and e.key == item["id"] for e in events)
    # Transient faults are retried: every file that should arrive arrives.
    assert not failures, failures
    # Nothing under a final name except exact copies of the right file.
    for path in out.iterdir():
        assert not path.name.endswith((".part", ".aria2")), f"leftover {path.name}"
        scenario, data = plan[path.name]
        assert SCENARIOS[scenario] is None and path.read_bytes() == data
    assert len({s for s, _ in plan.values()}) >= 5, "the seed should cover most scenarios"
