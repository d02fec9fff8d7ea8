"""Linking WebUI installs to the store on a real file system (real symlinks, real moves)."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from sdpanel.storage import (
    StorageRoot,
    _fsops,
    link_webui,
    unlink_webui,
    webui_folders,
    webui_ids,
)

SYMLINK_WEBUIS = [w for w in webui_ids() if w != "comfyui"]


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def tree(base: Path) -> dict[str, str]:
    """Everything under ``base`` without following links: path -> 'dir' | 'link:T' | sha."""
    out = {}
    for dirpath, dirs, files in os.walk(base):
        for n in dirs + files:
            p = Path(dirpath) / n
            rel = str(p.relative_to(base))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = sha(p)
    return out


def install(base: Path, webui: str) -> Path:
    """A fake install: the WebUI's folders as a fresh clone has them (some with files)."""
    wd = base / webui
    for rels in webui_folders(webui).values():
        for rel in rels:
            (wd / rel).mkdir(parents=True, exist_ok=True)
    (wd / "launch.py").write_text("print('hi')\n")
    return wd


@pytest.mark.parametrize("webui", SYMLINK_WEBUIS)
def test_symlink_layout_moves_files_and_round_trips(tmp_path: Path, webui: str) -> None:
    store = StorageRoot.at(tmp_path / "store")
    wd = install(tmp_path, webui)
    folders = webui_folders(webui)
    ck = wd / folders["checkpoints"][0]
    (ck / "Put Stable Diffusion checkpoints here.txt").write_text("")
    (ck / "model.safetensors").write_bytes(b"M" * 4096)
    (ck / "sub").mkdir()
    (ck / "sub" / "nested.ckpt").write_bytes(b"N" * 100)
    lora = wd / folders["loras"][0]
    (lora / "style.safetensors").write_bytes(b"L" * 333)
    dm = wd / folders["diffusion_models"][0]
    (dm / "flux.safetensors").write_bytes(b"F" * 777)

    rep = link_webui(store, wd, webui)
    assert rep.ok, rep.summary()
    # Every folder of the table now shows the store's folder for its kind.
    for kind, rels in folders.items():
        for rel in rels:
            owner = next(k for k, rs in folders.items() if rel in rs)
            # A folder shared by two kinds shows the second one as a sub-folder.
            seen = wd / rel if owner == kind else wd / rel / store.kind_dir(kind).name
            assert Path(os.path.realpath(seen)) == store.kind_dir(kind), rel
    assert (wd / folders["checkpoints"][0]).is_symlink()
    # Files moved into the store, visible through the WebUI's names.
    assert (store.kind_dir("checkpoints") / "model.safetensors").read_bytes() == b"M" * 4096
    assert (store.kind_dir("checkpoints") / "sub" / "nested.ckpt").exists()
    assert (store.kind_dir("loras") / "style.safetensors").exists()
    assert (store.kind_dir("diffusion_models") / "flux.safetensors").exists()
    assert (wd / folders["diffusion_models"][0] / "flux.safetensors").read_bytes() == b"F" * 777
    assert (wd / folders["loras"][-1] / "style.safetensors").exists()
    # A model added to the store later is seen at once.
    (store.kind_dir("vae") / "new.vae.pt").write_bytes(b"v")
    assert (wd / folders["vae"][0] / "new.vae.pt").exists()
    assert Path(rep.manifest).is_file()
    assert {m.action for m in rep.placed} == {"moved"}

    # Idempotent: a second run changes nothing.
    before = tree(tmp_path)
    again = link_webui(store, wd, webui)
    assert again.ok and not again.linked and not again.placed
    assert tree(tmp_path) == before

    # Unlink: plain real folders again, placeholder back, models stay in the store.
    back = unlink_webui(store, wd, webui)
    assert back.ok and back.removed
    for rels in folders.values():
        for rel in rels:
            assert (wd / rel).is_dir() and not (wd / rel).is_symlink(), rel
    inner = {Path(r).name for r in folders["diffusion_models"] if r.startswith(folders["checkpoints"][0] + "/")}
    assert set(os.listdir(ck)) == {"Put Stable Diffusion checkpoints here.txt"} | inner
    assert (store.kind_dir("checkpoints") / "model.safetensors").exists()
    assert not any(p.is_symlink() for p in store.path.rglob("*"))
    assert not Path(rep.manifest).exists()
    assert unlink_webui(store, wd, webui).removed == []  # idempotent too


def test_existing_files_same_content_kept_once_different_content_both_kept(tmp_path: Path) -> None:
    store = StorageRoot.at(tmp_path / "store").ensure()
    (store.kind_dir("checkpoints") / "same.safetensors").write_bytes(b"S" * 5000)
    (store.kind_dir("checkpoints") / "clash.safetensors").write_bytes(b"store version")
    wd = install(tmp_path, "forge")
    ck = wd / "models/Stable-diffusion"
    (ck / "same.safetensors").write_bytes(b"S" * 5000)
    (ck / "clash.safetensors").write_bytes(b"webui version")
    rep = link_webui(store, wd, "forge")
    assert rep.ok, rep.summary()
    actions = {Path(p.src).name: (p.action, Path(p.dest).name) for p in rep.placed}
    assert actions["same.safetensors"] == ("deduplicated", "same.safetensors")
    assert actions["clash.safetensors"] == ("renamed", "clash-2.safetensors")
    files = sorted(p.name for p in store.kind_dir("checkpoints").iterdir() if p.is_file())
    assert files == ["clash-2.safetensors", "clash.safetensors", "same.safetensors"]
    assert (store.kind_dir("checkpoints") / "clash.safetensors").read_bytes() == b"store version"
    assert (store.kind_dir("checkpoints") / "clash-2.safetensors").read_bytes() == b"webui version"
    import json
    moves = json.loads(Path(rep.manifest).read_text())["moves"]
    assert {Path(m["from"]).name for m in moves} == {"same.safetensors", "clash.safetensors"}


def test_comfyui_yaml_merged_with_user_keys_and_removed(tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    store = StorageRoot.at(tmp_path / "store")
    wd = install(tmp_path, "comfyui")
    (wd / "models/checkpoints/put_checkpoints_here").write_text("")
    (wd / "models/loras/mine.safetensors").write_bytes(b"x" * 64)
    user = ("# my own folders\na111:\n    base_path: /content/sd/\n"
            "    checkpoints: models/Stable-diffusion\n    loras: |\n        models/Lora\n"
            "        models/LyCORIS\n")
    (wd / "extra_model_paths.yaml").write_text(user)

    rep = link_webui(store, wd, "comfyui")
    assert rep.ok, rep.summary()
    text = (wd / "extra_model_paths.yaml").read_text()
    assert text.startswith(user)  # the user's text verbatim
    data = yaml.safe_load(text)
    assert data["a111"] == yaml.safe_load(user)["a111"]
    ours = data["sdpanel"]
    assert ours["base_path"] == str(store.path)
    assert ours["checkpoints"] == "checkpoints"
    assert ours["clip"] == ours["text_encoders"] == "text_encoders"
    assert ours["ultralytics_bbox"] == ours["ultralytics_segm"] == "adetailer"
    assert ours["upscale_models"] == "upscalers" and ours["sams"] == "sam"
    for key, folder in ours.items():
        if key != "base_path":
            assert (store.path / folder).is_dir()
    # Real files moved into the store; ComfyUI's own placeholder left alone.
    assert (store.kind_dir("loras") / "mine.safetensors").exists()
    assert (wd / "models/checkpoints/put_checkpoints_here").exists()
    assert not (wd / "models/checkpoints").is_symlink()

    assert link_webui(store, wd, "comfyui").already == ["extra_model_paths.yaml"]
    assert (wd / "extra_model_paths.yaml").read_text() == text

    back = unlink_webui(store, wd, "comfyui")
    assert back.removed == ["extra_model_paths.yaml"]
    assert (wd / "extra_model_paths.yaml").read_text() == user


def test_comfyui_yaml_we_created_is_removed(tmp_path: Path) -> None:
    store = StorageRoot.at(tmp_path / "store")
    wd = install(tmp_path, "comfyui")
    link_webui(store, wd, "comfyui")
    assert (wd / "extra_model_paths.yaml").read_text().lstrip().startswith("# >>> sdpanel")
    unlink_webui(store, wd, "comfyui")
    assert not (wd / "extra_model_paths.yaml").exists()


def test_comfyui_refuses_broken_user_yaml(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    store = StorageRoot.at(tmp_path / "store")
    wd = install(tmp_path, "comfyui")
    bad = "a111:\n  base_path: [unclosed\n"
    (wd / "extra_model_paths.yaml").write_text(bad)
    rep = link_webui(store, wd, "comfyui")
    assert not rep.ok and "not valid YAML" in rep.errors[0]
    assert (wd / "extra_model_paths.yaml").read_text() == bad


def test_two_webuis_share_nested_links(tmp_path: Path) -> None:
    store = StorageRoot.at(tmp_path / "store")
    a, f = install(tmp_path, "a1111"), install(tmp_path, "forge")
    assert link_webui(store, a, "a1111").ok and link_webui(store, f, "forge").ok
    unlink_webui(store, a, "a1111")
    # forge still sees diffusion models through checkpoints/unet in the store.
    (store.kind_dir("diffusion_models") / "u.safetensors").write_bytes(b"u")
    assert (f / "models/Stable-diffusion/unet/u.safetensors").exists()
    unlink_webui(store, f, "forge")
    assert not (store.kind_dir("checkpoints") / "unet").exists()


def test_no_symlinks_falls_back_to_hardlinks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = StorageRoot.at(tmp_path / "store").ensure()
    (store.kind_dir("loras") / "in-store.safetensors").write_bytes(b"L" * 10)
    wd = install(tmp_path, "sdnext")
    (wd / "models/Lora/mine.safetensors").write_bytes(b"m" * 20)

    def no_symlinks(*a: object, **k: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    rep = link_webui(store, wd, "sdnext")
    assert rep.ok, rep.summary()
    assert rep.method == "hardlink"
    assert "does not support symbolic links" in rep.warnings[0]
    for name in ("in-store.safetensors", "mine.safetensors"):
        seen, kept = wd / "models/Lora" / name, store.kind_dir("loras") / name
        assert os.path.samefile(seen, kept)
    assert link_webui(store, wd, "sdnext").ok  # again: nothing duplicated
    assert sorted(os.listdir(wd / "models/Lora")) == ["in-store.safetensors", "mine.safetensors"]
    unlink_webui(store, wd, "sdnext")
    assert os.listdir(wd / "models/Lora") == []
    assert (store.kind_dir("loras") / "mine.safetensors").read_bytes() == b"m" * 20


def test_move_across_file_systems_copies_verifies_deletes(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_fsops, "same_device", lambda a, b: False)
    monkeypatch.setattr("sdpanel.storage._fsops.ensure_free_space", lambda *a, **k: None)
    store = StorageRoot.at(tmp_path / "store")
    wd = install(tmp_path, "a1111")
    data = os.urandom(3 * 1024 * 1024 + 17)
    (wd / "models/VAE/big.pt").write_bytes(data)
    rep = link_webui(store, wd, "a1111")
    assert rep.ok, rep.summary()
    assert (store.kind_dir("vae") / "big.pt").read_bytes() == data
    assert not list(store.kind_dir("vae").glob(".*part"))


def test_moving_to_another_store_repoints_our_links_only(tmp_path: Path) -> None:
    old, new = StorageRoot.at(tmp_path / "old"), StorageRoot.at(tmp_path / "new")
    wd = install(tmp_path, "reforge")
    mine = tmp_path / "my-vaes"
    mine.mkdir()
    (wd / "models/VAE").rmdir()
    os.symlink(mine, wd / "models/VAE")  # the user's own link: never re-pointed
    assert link_webui(old, wd, "reforge").ok
    (old.kind_dir("loras") / "old.safetensors").write_bytes(b"o")
    rep = link_webui(new, wd, "reforge")
    assert rep.ok, rep.summary()
    assert Path(os.path.realpath(wd / "models/Lora")) == new.kind_dir("loras")
    assert any("pointed at the store" in w for w in rep.warnings)
    assert any("link of yours" in w and "VAE" in w for w in rep.warnings)
    assert os.readlink(wd / "models/VAE") == str(mine)
    assert (old.kind_dir("loras") / "old.safetensors").exists()  # the old store is untouched
