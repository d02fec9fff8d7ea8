"""The central store's skeleton, its state folder and the free-space check."""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path

import pytest

from sdpanel.storage import (
    InsufficientSpaceError,
    StorageRoot,
    _root,
    ensure_free_space,
    free_bytes,
    human_bytes,
    kind_ids,
    kinds,
)


def test_ensure_creates_every_kind_folder_and_state_dirs(tmp_path: Path) -> None:
    root = StorageRoot.at(tmp_path / "store").ensure()
    for kind in kinds():
        assert (root.path / str(kind["folder"])).is_dir(), kind
    assert root.outputs_dir.is_dir()
    for sub in ("logs", "pids", "journals", "cache"):
        assert (root.path / ".sdpanel" / sub).is_dir()
    # idempotent, and keeps what is there
    (root.kind_dir("loras") / "a.safetensors").write_bytes(b"x")
    root.ensure()
    assert (root.kind_dir("loras") / "a.safetensors").read_bytes() == b"x"


def test_kinds_include_the_model_types_users_download() -> None:
    ids = kind_ids()
    for expected in ("checkpoints", "loras", "vae", "embeddings", "controlnet", "upscalers",
                     "text_encoders", "clip_vision", "diffusion_models", "adetailer", "sam",
                     "ipadapter", "hypernetworks"):
        assert expected in ids
    assert len(ids) == len(set(ids))


def test_kind_dir_unknown_kind_names_known_ones(tmp_path: Path) -> None:
    root = StorageRoot.at(tmp_path)
    assert root.kind_dir("vae") == root.path / "vae"
    with pytest.raises(ValueError, match=r"Unknown model kind 'lora'; known kinds: checkpoints"):
        root.kind_dir("lora")


def test_state_path_makes_parents(tmp_path: Path) -> None:
    root = StorageRoot.at(tmp_path)
    p = root.state_path("journals", "downloads.json")
    assert p == tmp_path.resolve() / ".sdpanel" / "journals" / "downloads.json"
    assert p.parent.is_dir() and not p.exists()


def test_contains_resolves_symlinks(tmp_path: Path) -> None:
    root = StorageRoot.at(tmp_path / "store").ensure()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root.path / "escape").symlink_to(outside)
    assert root.contains(root.kind_dir("vae") / "x.safetensors")
    assert not root.contains(root.path / "escape" / "x")
    assert not root.contains(root.path / ".." / "outside")


def test_ensure_free_space_passes_when_it_fits(tmp_path: Path) -> None:
    ensure_free_space(tmp_path, 1024, what="a tiny file")


def test_ensure_free_space_names_the_shortfall(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(_root.shutil, "disk_usage", lambda p: usage(100 * 1024**3, 99 * 1024**3, 2 * 1024**3))
    with pytest.raises(InsufficientSpaceError) as err:
        ensure_free_space(tmp_path / "not-yet", 5 * 1024**3, what="sdxl.safetensors", reserve=0)
    message = str(err.value)
    assert "sdxl.safetensors" in message
    assert "needs 5.0 GiB" in message and "2.0 GiB free" in message
    assert "short by 3.0 GiB" in message
    assert "SDPANEL_STORAGE" in message  # says how to fix it
    assert err.value.needed - err.value.free == 3 * 1024**3


def test_shortfall_names_the_reserve_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small file on a nearly full disk: the message must not read as if the file were
    as big as the space kept free for the system."""
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(_root.shutil, "disk_usage", lambda p: usage(100 * 1024**3, 99 * 1024**3, 100 * 1024**2))
    with pytest.raises(InsufficientSpaceError) as err:
        ensure_free_space(tmp_path, 4096, what="tiny.json", reserve=256 * 1024**2)
    message = str(err.value)
    assert "needs 4.0 KiB plus 256.0 MiB kept free" in message and "100.0 MiB free" in message


def test_free_bytes_walks_up_to_an_existing_parent(tmp_path: Path) -> None:
    assert free_bytes(tmp_path / "a" / "b") > 0
    assert not (tmp_path / "a").exists()  # asking never creates folders


def test_human_bytes() -> None:
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(3 * 1024**3) == "3.0 GiB"
