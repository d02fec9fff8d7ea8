"""Hostile trees: loops, links out of the store, dangling links, unreadable files, a FIFO and
a full disk during a move. Nothing outside the store is touched, nothing is lost, and the
errors say what happened.

Tests run as root, so ``chmod 000`` does not stop a read: "unreadable" is simulated by
replacing ``open`` in the hashing/moving modules with one that raises EACCES for chosen
paths (what a non-root user gets), plus a real FIFO (which no copy can take).
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import os
from pathlib import Path

import pytest

from sdpanel.storage import (
    ContentIndex,
    StorageRoot,
    _fsops,
    _index,
    apply_clean,
    link_webui,
    plan_clean,
)


def snapshot(base: Path) -> dict[str, tuple[str, object]]:
    out: dict[str, tuple[str, object]] = {}
    for dirpath, dirs, files in os.walk(base):
        for n in dirs + files:
            p = Path(dirpath) / n
            st = os.lstat(p)
            if p.is_symlink():
                out[str(p)] = ("link", os.readlink(p))
            elif p.is_dir():
                out[str(p)] = ("dir", None)
            else:
                out[str(p)] = ("file", (st.st_ino, st.st_mtime_ns,
                                        hashlib.sha256(p.read_bytes()).hexdigest()))
    return out


@pytest.fixture
def world(tmp_path: Path) -> tuple[StorageRoot, Path, Path]:
    outside = tmp_path / "outside"
    (outside / "models").mkdir(parents=True)
    (outside / "real.safetensors").write_bytes(b"precious" * 1000)
    (outside / "models" / "theirs.ckpt").write_bytes(b"theirs")
    wd = tmp_path / "webui"
    (wd / "models" / "Lora").mkdir(parents=True)
    return StorageRoot.at(tmp_path / "store").ensure(), wd, outside


def test_loops_outside_links_and_dangling_links(world: tuple[StorageRoot, Path, Path]) -> None:
    store, wd, outside = world
    lora = wd / "models" / "Lora"
    (lora / "ok.safetensors").write_bytes(b"ok")
    os.symlink(lora, lora / "loop")  # a folder link to its own parent
    os.symlink(lora / "b", lora / "a")
    os.symlink(lora / "a", lora / "b")  # a <-> b
    os.symlink(outside / "real.safetensors", lora / "outside.safetensors")
    os.symlink(outside / "gone.safetensors", lora / "dangling.safetensors")
    before = snapshot(outside)

    rep = link_webui(store, wd, "a1111")
    assert rep.ok, rep.summary()
    assert snapshot(outside) == before
    loras = store.kind_dir("loras")
    assert (loras / "ok.safetensors").read_bytes() == b"ok"
    # Links are moved as links (never followed): the outside file is still only outside.
    assert os.readlink(loras / "outside.safetensors") == str(outside / "real.safetensors")
    assert os.path.islink(loras / "dangling.safetensors")
    assert os.path.islink(loras / "loop")

    # Scans do not follow them either (no endless loop, no outside file counted).
    entries = ContentIndex(store).scan([store.path])
    assert {e.path.name for e in entries if e.path.parent == loras} == {"ok.safetensors"}

    # The cleaner removes broken links and, asked for a link, the link only.
    plan = plan_clean(store, leftovers=True)
    broken = {Path(i.path).name for i in plan.items if i.reason == "broken symlink"}
    assert {"dangling.safetensors", "a", "b"} <= broken
    res = apply_clean(plan)
    assert not res.errors and not os.path.lexists(loras / "dangling.safetensors")
    plan = plan_clean(store, files=[loras / "outside.safetensors"])
    assert plan.items[0].is_link and plan.bytes == 0
    apply_clean(plan)
    assert not os.path.lexists(loras / "outside.safetensors")
    assert snapshot(outside) == before


def test_cleaner_refuses_paths_outside_the_store(world: tuple[StorageRoot, Path, Path]) -> None:
    store, _wd, outside = world
    os.symlink(outside, store.kind_dir("other") / "escape")  # a folder link out of the store
    before = snapshot(outside)
    plan = plan_clean(store, files=[outside / "real.safetensors",
                                    store.kind_dir("other") / "escape" / "real.safetensors",
                                    store.path / "../outside/real.safetensors"])
    assert plan.items == []
    assert len(plan.errors) == 3 and all("outside the store" in e for e in plan.errors)
    plan = plan_clean(store, kinds=["other"], leftovers=True)
    assert all(not i.path.startswith(str(outside)) for i in plan.items)
    apply_clean(plan)
    assert snapshot(outside) == before


def test_webui_folder_behind_a_link_to_elsewhere_is_left_alone(
        world: tuple[StorageRoot, Path, Path]) -> None:
    store, wd, outside = world
    (wd / "models" / "Lora").rmdir()
    (wd / "models").rmdir()
    os.symlink(outside / "models", wd / "models")  # the user keeps models on another disk
    (outside / "models" / "Lora").mkdir()
    (outside / "models" / "Lora" / "x.safetensors").write_bytes(b"x")
    before = snapshot(outside)
    rep = link_webui(store, wd, "forge")
    assert snapshot(outside) == before
    assert rep.errors and all("outside" in e for e in rep.errors), rep.errors
    assert not (store.kind_dir("loras") / "x.safetensors").exists()


def test_unreadable_file_and_fifo_are_left_in_place(world: tuple[StorageRoot, Path, Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    store, wd, _ = world
    lora = wd / "models" / "Lora"
    (lora / "secret.safetensors").write_bytes(b"s" * 2048)
    (lora / "fine.safetensors").write_bytes(b"f" * 2048)
    os.mkfifo(lora / "pipe")
    real_open = builtins.open

    def guarded_open(file: object, *a: object, **k: object) -> object:
        if str(file).endswith("secret.safetensors"):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *a, **k)  # type: ignore[call-overload]

    # Reading is what fails for a non-root user; a cross-file-system move must read.
    monkeypatch.setattr(_index, "open", guarded_open, raising=False)
    monkeypatch.setattr(_fsops, "open", guarded_open, raising=False)
    monkeypatch.setattr(_fsops, "same_device", lambda a, b: False)
    monkeypatch.setattr(_fsops, "ensure_free_space", lambda *a, **k: None)

    rep = link_webui(store, wd, "a1111")
    assert (store.kind_dir("loras") / "fine.safetensors").read_bytes() == b"f" * 2048
    assert (lora / "secret.safetensors").read_bytes() == b"s" * 2048  # still there
    assert not lora.is_symlink()  # not linked: it still holds files
    msgs = "\n".join(rep.errors)
    assert "secret.safetensors" in msgs and "Permission denied" in msgs and "still in place" in msgs
    assert "pipe is not a regular file" in msgs
    assert "models/Lora still holds 2 item(s)" in msgs
    assert not list(store.kind_dir("loras").glob(".*.part"))

    idx = ContentIndex(store)
    entries = idx.scan([lora])
    by = {e.path.name: e for e in entries}
    assert by["secret.safetensors"].sha256 is None and "pipe" not in by
    assert any("secret.safetensors" in e and "Permission denied" in e for e in idx.errors)


def test_full_disk_during_a_move_loses_nothing(world: tuple[StorageRoot, Path, Path],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    store, wd, _ = world
    lora = wd / "models" / "Lora"
    data = os.urandom(5 * 1024 * 1024 + 3)
    (lora / "big.safetensors").write_bytes(data)
    monkeypatch.setattr(_fsops, "same_device", lambda a, b: False)
    monkeypatch.setattr(_fsops, "ensure_free_space", lambda *a, **k: None)
    written = 0
    real_write = _fsops._write_chunk

    def filling_disk(f: object, chunk: memoryview) -> None:
        nonlocal written
        if written + len(chunk) > 2 * 1024 * 1024:
            raise OSError(errno.ENOSPC, "No space left on device")
        written += len(chunk)
        real_write(f, chunk)

    monkeypatch.setattr(_fsops, "_write_chunk", filling_disk)
    rep = link_webui(store, wd, "a1111")
    assert not rep.ok
    assert any("No space left on device" in e and "nothing was lost" in e for e in rep.errors)
    assert (lora / "big.safetensors").read_bytes() == data
    assert not lora.is_symlink()
    assert os.listdir(store.kind_dir("loras")) == []  # no partial copy, under any name

    monkeypatch.setattr(_fsops, "_write_chunk", real_write)  # space freed: try again
    rep = link_webui(store, wd, "a1111")
    assert rep.ok, rep.summary()
    assert (store.kind_dir("loras") / "big.safetensors").read_bytes() == data
    assert lora.is_symlink()


def test_not_enough_space_is_said_before_copying(world: tuple[StorageRoot, Path, Path],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    store, wd, _ = world
    (wd / "models" / "Lora" / "m.safetensors").write_bytes(b"m" * 1000)
    monkeypatch.setattr(_fsops, "same_device", lambda a, b: False)
    monkeypatch.setattr("sdpanel.storage._root.free_bytes", lambda p: 10)
    rep = link_webui(store, wd, "a1111")
    assert any("Not enough disk space" in e and "m.safetensors" in e for e in rep.errors)
    assert (wd / "models" / "Lora" / "m.safetensors").exists()
