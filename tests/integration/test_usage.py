"""Usage report: bytes per kind, model, WebUI, caches, leftovers, free space; and where a
persistent store goes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from sdpanel.cli import main
from sdpanel.storage import (
    ContentIndex,
    StorageRoot,
    format_report,
    link_webui,
    persistent_store_for,
    usage_report,
)


def put(p: Path, size: int) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x" * size)
    return p


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[StorageRoot, Path, Path]:
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path / "pip"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    put(tmp_path / "pip" / "wheels" / "w.whl", 1_000)
    put(tmp_path / "hf" / "models--a--b" / "blobs" / "x", 2_000)
    root = StorageRoot.at(tmp_path / "store").ensure()
    put(root.kind_dir("checkpoints") / "big.safetensors", 50_000)
    put(root.kind_dir("checkpoints") / "big.civitai.json", 100)
    put(root.kind_dir("checkpoints") / "big.preview.jpeg", 900)
    put(root.kind_dir("loras") / "a.safetensors", 3_000)
    (root.kind_dir("loras") / "copy.safetensors").write_bytes(b"x" * 3_000)  # same content
    os.link(root.kind_dir("loras") / "a.safetensors", root.kind_dir("loras") / "a-hard.safetensors")
    put(root.kind_dir("vae") / "dl.pt.part", 700)
    put(root.outputs_dir / "img.png", 400)
    wd = tmp_path / "work" / "forge"
    put(wd / "launch.py", 10)
    put(wd / "venv" / "lib" / "torch.so", 8_000)
    put(wd / "outputs" / "txt2img" / "1.png", 600)
    put(tmp_path / "work" / "stray.bin.aria2", 55)
    return root, wd, tmp_path / "work"


def test_report_counts_what_a_user_would(world: tuple[StorageRoot, Path, Path]) -> None:
    root, wd, work = world
    assert link_webui(root, wd, "forge").ok
    ContentIndex(root).scan([root.path])  # hashes known: duplicates get marked
    rep = usage_report(root, work)
    assert rep.kinds["checkpoints"] == {"bytes": 51_000, "files": 1}
    assert rep.kinds["loras"] == {"bytes": 6_000, "files": 2}  # the hardlink counts once
    assert rep.kinds["sam"] == {"bytes": 0, "files": 0}
    big = next(m for m in rep.models if m.path.endswith("big.safetensors"))
    assert big.bytes == 50_000 and big.sidecars == 2 and big.kind == "checkpoints"
    assert big.webuis and "forge" in big.webuis[0]
    assert rep.models[0] is big
    assert {Path(m.path).name for m in rep.models if m.duplicate} == {"a.safetensors", "copy.safetensors"}
    assert rep.outputs_bytes == 400
    forge = next(iter(rep.webuis.values()))
    assert (forge["venv"], forge["outputs"]) == (8_000, 600)
    assert forge["install"] < 1_000  # linked model folders are the store's, not the install's
    assert rep.caches["pip"]["bytes"] == 1_000 and rep.caches["huggingface"]["bytes"] == 2_000
    assert {Path(p["path"]).name for p in rep.partials} == {"dl.pt.part", "stray.bin.aria2"}
    assert rep.disks["store"]["free"] > 0 and rep.disks["work"]["path"] == str(work)
    text = format_report(rep)
    for needle in ("checkpoints", "48.8 KiB", "[duplicate]", "venv 7.8 KiB", "Cache pip",
                   "Download leftovers (.part/.aria2): 2 file(s)", "free of"):
        assert needle in text, needle
    json.dumps(rep.to_dict())  # JSON-safe for the panel and --json


def test_cli_report_json(world: tuple[StorageRoot, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    root, wd, work = world
    assert main(["storage", "report", "--json", "--storage", str(root.path), "--work-dir", str(work),
                 "--webui", "forge", str(wd)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kinds"]["checkpoints"]["bytes"] == 51_000
    assert data["webuis"][f"forge:{wd}"]["venv"] == 8_000


def test_cli_link_unlink_dedup(world: tuple[StorageRoot, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    root, wd, _ = world
    s = ["--storage", str(root.path)]
    assert main(["storage", "link", str(wd), "--webui", "forge", *s]) == 0
    assert (wd / "models" / "Lora").is_symlink()
    assert main(["storage", "dedup", "--dry-run", *s]) == 0
    assert "would save 2.9 KiB" in capsys.readouterr().out
    assert main(["storage", "unlink", str(wd), "--webui", "forge", *s]) == 0
    assert not (wd / "models" / "Lora").is_symlink()
    assert main(["storage", "link", str(wd), "--webui", "nope", *s]) == 1  # clear error, no trace
    assert "Unknown WebUI 'nope'" in capsys.readouterr().err


def test_persistent_store(tmp_path: Path) -> None:
    drive = tmp_path / "MyDrive"
    drive.mkdir()
    assert persistent_store_for(SimpleNamespace(persistent_dir=drive)) == drive / "sdpanel"
    assert persistent_store_for(SimpleNamespace(persistent_dir=None)) is None
    assert persistent_store_for(SimpleNamespace(persistent_dir=tmp_path / "not-mounted")) is None
    # A folder nobody can write, root included (tests run as root): /proc.
    assert persistent_store_for(SimpleNamespace(persistent_dir="/proc")) is None
    (tmp_path / "file-not-dir").write_text("")
    assert persistent_store_for(SimpleNamespace(persistent_dir=tmp_path / "file-not-dir")) is None


async def test_service_publishes_on_the_bus(world: tuple[StorageRoot, Path, Path]) -> None:
    from sdpanel.runtime import EventBus, ProgressEvent, StateEvent
    from sdpanel.storage import StorageService

    root, wd, work = world
    bus, events = EventBus(), []
    bus.subscribe(events.append, topics={"storage"})
    svc = StorageService(bus, root, work)
    assert (await svc.link(wd, "forge")).ok
    rep = await svc.report()
    assert rep.kinds["checkpoints"]["bytes"] == 51_000
    dd = await svc.dedup(dry_run=True)
    assert dd.bytes_saved == 3_000  # loras/copy.safetensors duplicates a.safetensors
    plan = await svc.plan_clean(kinds=["checkpoints"])
    res = await svc.apply_clean(plan)
    assert res.bytes_freed == plan.bytes == 51_000
    states = {(e.key, e.state) for e in events if isinstance(e, StateEvent)}
    assert {("link:forge", "done"), ("report", "ready"), ("dedup", "done"), ("clean", "preview"),
            ("clean", "done")} <= states
    report_event = next(e for e in events if isinstance(e, StateEvent) and e.key == "report")
    json.dumps(report_event.data)
    assert any(isinstance(e, ProgressEvent) and e.key == "dedup" for e in events)
