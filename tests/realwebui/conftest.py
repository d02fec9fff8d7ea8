"""The real-WebUI tier: the real ComfyUI 0.3.64 installed through sdpanel, on CPU.

Session fixtures, shared by every module of the tier (one ComfyUI process for all of
them, never one per test):

- ``comfy_zip``: a ``ComfyUI.zip`` (one top folder) built from ``../shared/webuis``.
- ``comfy_repo``: a local git repository of the snapshot with the tag ``v0.3.64``.
- ``comfy``: a store holding the random SD1.5 checkpoint, VAE and LoRA
  (``tests.fixtures.sd15_checkpoint``), ComfyUI installed into it with ``sdpanel install
  comfyui --from <zip URL>`` (served by the range server) on the cached venv named by the
  ``webui_python`` setting, then ``sdpanel launch comfyui --cpu --wait``. ``comfy.cli()``
  runs the CLI against that store, as a user would.

Images stay 64x64 with 1-2 steps so the CPU time stays small. Skipped (with the reason)
only where the snapshot folder is absent; CI has it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.comfy_env import (
    COMFYUI_VERSION,
    cache_dir,
    cache_lock,
    comfyui_tarball,
    comfyui_venv_python,
    have_comfyui_snapshot,
    snapshot_sha,
)
from tests.fixtures.range_server import RangeServer
from tests.fixtures.sd15_checkpoint import place, sd15_checkpoint, sd15_lora, sd15_vae

ROOT = Path(__file__).resolve().parents[2]
CKPT, VAE, LORA = "sd15-random.safetensors", "sd15-random-vae.safetensors", "sd15-random-lora.safetensors"
TAG = f"v{COMFYUI_VERSION}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.realwebui)
            if not have_comfyui_snapshot():
                item.add_marker(pytest.mark.skip(reason=f"no WebUI snapshot at {comfyui_tarball()}"))


def build_comfy_zip() -> Path:
    """``ComfyUI.zip`` from the snapshot, one top folder ``ComfyUI/`` (cached)."""
    out = cache_dir() / f"ComfyUI-{snapshot_sha()[:16]}.zip"
    if out.exists():
        return out
    with cache_lock(out.name):
        if not out.exists():
            tmp = out.with_suffix(f".tmp-{os.getpid()}")
            with tarfile.open(comfyui_tarball()) as tf, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
                for m in tf:
                    if m.isfile():
                        data = tf.extractfile(m)
                        assert data is not None
                        info = zipfile.ZipInfo(m.name, date_time=(2025, 10, 12, 0, 0, 0))
                        info.external_attr = (m.mode & 0o777) << 16
                        info.compress_type = zipfile.ZIP_DEFLATED
                        zf.writestr(info, data.read())
            tmp.rename(out)
    return out


def build_comfy_repo() -> Path:
    """A git repository of the snapshot, one commit tagged ``v0.3.64`` (cached)."""
    repo = cache_dir() / f"comfyui-git-{snapshot_sha()[:16]}"
    if (repo / ".complete").exists():
        return repo
    with cache_lock(repo.name):
        if not (repo / ".complete").exists():
            tmp = repo.with_name(repo.name + f".tmp-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            with tarfile.open(comfyui_tarball()) as tf:
                tf.extractall(tmp, filter="data")
            src = tmp / "ComfyUI"
            env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                   "GIT_COMMITTER_EMAIL": "t@t", "GIT_AUTHOR_DATE": "2025-10-12T00:00:00Z",
                   "GIT_COMMITTER_DATE": "2025-10-12T00:00:00Z"}
            for cmd in (["init", "-q", "-b", "master"], ["add", "-A"], ["commit", "-qm", f"ComfyUI {COMFYUI_VERSION}"],
                        ["tag", TAG]):
                subprocess.run(["git", "-C", str(src), *cmd], check=True, env=env, capture_output=True)
            (src / ".complete").touch()  # untracked: marks a finished build
            shutil.rmtree(repo, ignore_errors=True)
            src.rename(repo)
            shutil.rmtree(tmp, ignore_errors=True)
    return repo


@pytest.fixture(scope="session")
def comfy_zip() -> Path:
    return build_comfy_zip()


@pytest.fixture(scope="session")
def comfy_repo() -> Path:
    return build_comfy_repo()


@pytest.fixture(scope="session")
def comfy_python() -> Path:
    return comfyui_venv_python()


@dataclass
class Comfy:
    """A store with the test models and an installed (and, once launched, running) ComfyUI."""

    base: Path
    env: dict[str, str]
    url: str = ""
    port: int = 0
    install_out: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def store(self) -> Path:
        return self.base / "store"

    @property
    def webui_dir(self) -> Path:
        return self.base / "webuis" / "comfyui"

    def cli(self, *args: str, check: bool = True, timeout: float = 900,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([sys.executable, "-m", "sdpanel", *args, "--storage", str(self.store)],
                             cwd=ROOT, env={**self.env, **(env or {})}, capture_output=True, text=True,
                             timeout=timeout)
        if check:
            assert res.returncode == 0, f"sdpanel {' '.join(args)}:\n{res.stdout}\n{res.stderr}"
        return res

    def record(self) -> dict[str, Any]:
        return dict(json.loads((self.store / ".sdpanel" / "pids" / "webui-comfyui.json").read_text()))


def new_comfy(base: Path, *, python: str | None) -> Comfy:
    """A store with the three model files; ``python``: the webui_python setting (None:
    the install builds the venv itself, with the test torch)."""
    base.mkdir(parents=True, exist_ok=True)
    store = base / "store"
    env = {k: v for k, v in os.environ.items() if k not in ("SDPANEL_WEBUI_PYTHON",)}
    env.update({"SDPANEL_WEBUIS_DIR": str(base / "webuis"), "SDPANEL_PLATFORM": "local",
                "SDPANEL_WEBUI_TORCH": " ".join(_test_torch())})
    if python:
        env["SDPANEL_WEBUI_PYTHON"] = python
    comfy = Comfy(base=base, env=env)
    from sdpanel.storage import StorageRoot

    root = StorageRoot.at(store).ensure()
    place(sd15_checkpoint(), root.kind_dir("checkpoints") / CKPT)
    place(sd15_vae(), root.kind_dir("vae") / VAE)
    place(sd15_lora(), root.kind_dir("loras") / LORA)
    return comfy


def _test_torch() -> tuple[str, ...]:
    from tests.fixtures.comfy_env import TEST_TORCH

    return TEST_TORCH


def launch(comfy: Comfy, *args: str) -> None:
    out = comfy.cli("launch", "comfyui", "--cpu", "--wait", "--timeout", "900", *args).stdout
    comfy.port = int(comfy.record()["port"])
    comfy.url = f"http://127.0.0.1:{comfy.port}"
    assert f"local:   {comfy.url}" in out, out


@pytest.fixture(scope="session")
def comfy(tmp_path_factory: pytest.TempPathFactory, comfy_zip: Path, comfy_python: Path) -> Iterator[Comfy]:
    c = new_comfy(tmp_path_factory.mktemp("comfy-pkg"), python=str(comfy_python))
    with RangeServer() as srv:
        srv.add_file("ComfyUI.zip", comfy_zip)
        c.install_out = c.cli("install", "comfyui", "--from", srv.url("ComfyUI.zip"), "--no-extensions").stdout
    launch(c)
    try:
        yield c
    finally:
        c.cli("stop", "comfyui", check=False)
