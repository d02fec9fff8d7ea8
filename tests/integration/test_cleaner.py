"""The cleaner: the preview's bytes are the bytes that come back; --yes is needed to delete."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sdpanel.cli import main
from sdpanel.storage import StorageRoot, apply_clean, link_webui, plan_clean


def distinct_bytes(base: Path) -> int:
    seen, total = set(), 0
    for dirpath, dirs, files in os.walk(base):
        if ".sdpanel" in dirs:
            dirs.remove(".sdpanel")
        for f in files:
            p = os.path.join(dirpath, f)
            st = os.lstat(p)
            if not os.path.islink(p) and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def put(p: Path, size: int, days_old: float = 0) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(os.urandom(size))
    if days_old:
        t = time.time() - days_old * 86400
        os.utime(p, (t, t))
    return p


@pytest.fixture
def store(tmp_path: Path) -> StorageRoot:
    root = StorageRoot.at(tmp_path / "store").ensure()
    ck = root.kind_dir("checkpoints")
    put(ck / "old-big.safetensors", 90_000, days_old=40)
    put(ck / "old-big.civitai.json", 300)
    put(ck / "old-big.preview.png", 700)
    put(ck / "new-big.safetensors", 80_000)
    put(ck / "old-small.safetensors", 500, days_old=40)
    put(root.kind_dir("sam") / "sam_vit_b.pth", 20_000, days_old=5)
    put(root.kind_dir("loras") / "shared.safetensors", 10_000, days_old=60)
    os.link(root.kind_dir("loras") / "shared.safetensors", root.kind_dir("loras") / "shared-2.safetensors")
    put(ck / "stale.safetensors.part", 4_000, days_old=1)
    put(ck / "stale.safetensors.part.aria2", 100, days_old=1)
    put(ck / "fresh.safetensors.part", 4_000)  # a download in progress
    os.symlink(ck / "nowhere.safetensors", ck / "broken.safetensors")
    return root


def test_preview_bytes_are_the_bytes_freed(store: StorageRoot) -> None:
    plan = plan_clean(store, older_than_days=30, larger_than=1000, leftovers=True)
    names = {Path(i.path).name for i in plan.items}
    assert names == {"old-big.safetensors", "old-big.civitai.json", "old-big.preview.png",
                     "shared.safetensors", "shared-2.safetensors",
                     "stale.safetensors.part", "stale.safetensors.part.aria2", "broken.safetensors"}
    expected = 90_000 + 300 + 700 + 10_000 + 4_000 + 100
    assert plan.bytes == expected
    before = distinct_bytes(store.path)
    res = apply_clean(plan)
    assert not res.errors and not res.skipped
    assert res.bytes_freed == expected == before - distinct_bytes(store.path)
    assert (store.kind_dir("checkpoints") / "fresh.safetensors.part").exists()
    assert (store.kind_dir("checkpoints") / "new-big.safetensors").exists()


def test_one_name_of_a_hardlinked_file_frees_nothing(store: StorageRoot) -> None:
    plan = plan_clean(store, files=[store.kind_dir("loras") / "shared.safetensors"])
    assert len(plan.items) == 1 and plan.bytes == 0
    before = distinct_bytes(store.path)
    assert apply_clean(plan).bytes_freed == 0 == before - distinct_bytes(store.path)


def test_kind_and_unused(store: StorageRoot, tmp_path: Path) -> None:
    assert {Path(i.path).name for i in plan_clean(store, kinds=["sam"]).items} == {"sam_vit_b.pth"}
    wd = tmp_path / "sdnext"
    wd.mkdir()
    assert link_webui(store, wd, "sdnext").ok  # SD.Next has no sam folder
    unused = {Path(i.path).name for i in plan_clean(store, unused=True).items}
    assert unused == {"sam_vit_b.pth"}


def test_changed_since_preview_is_skipped(store: StorageRoot) -> None:
    plan = plan_clean(store, kinds=["checkpoints"], larger_than=50_000)
    target = store.kind_dir("checkpoints") / "new-big.safetensors"
    target.write_bytes(b"replaced by a fresh download")
    res = apply_clean(plan)
    assert (str(target), "changed since the preview") in res.skipped
    assert target.exists()
    assert not (store.kind_dir("checkpoints") / "old-big.safetensors").exists()
    assert "skipped" in res.summary()


def test_delete_through_a_webui_link_deletes_the_store_file(store: StorageRoot, tmp_path: Path) -> None:
    wd = tmp_path / "forge"
    wd.mkdir()
    link_webui(store, wd, "forge")
    via = wd / "models" / "Stable-diffusion" / "new-big.safetensors"
    plan = plan_clean(store, files=[via])
    assert [i.path for i in plan.items] == [str(store.kind_dir("checkpoints") / "new-big.safetensors")]
    apply_clean(plan)
    assert not via.exists() and (wd / "models" / "Stable-diffusion").is_symlink()


def test_caches(store: StorageRoot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pip = tmp_path / "pipcache"
    put(pip / "http" / "a" / "blob", 12_345)
    monkeypatch.setenv("PIP_CACHE_DIR", str(pip))
    plan = plan_clean(store, caches=["pip"])
    assert plan.bytes == 12_345
    assert apply_clean(plan).bytes_freed == 12_345 and not pip.exists()
    assert "unknown cache" in plan_clean(store, caches=["conda"]).errors[0]


def test_cli_previews_without_yes(store: StorageRoot, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["clean", "--storage", str(store.path), "--kind", "checkpoints", "--larger-than", "50K"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Preview only: nothing was deleted" in out and "new-big.safetensors" in out
    assert (store.kind_dir("checkpoints") / "new-big.safetensors").exists()
    assert main([*args, "--yes"]) == 0
    assert "freed 167.0 KiB" in capsys.readouterr().out  # (90000 + 300 + 700 + 80000) B
    assert not (store.kind_dir("checkpoints") / "new-big.safetensors").exists()
    assert main(["clean", "--storage", str(store.path)]) == 2
