"""Install the way the seed asks: the prebuilt package + venv archive from a Hugging Face
repo laid out like ``NagisaNao/ANXETY`` (here a local Hub-compatible server reached
through ``HF_ENDPOINT``), the venv a real one built in the test and packed like sdAIgen's."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import aiohttp
import pytest

from sdpanel.runtime import LogEvent
from sdpanel.storage import usage_report
from sdpanel.webuis import WebUIService, installed_info, webui_info
from tests.fixtures.hf_server import HFServer
from tests.fixtures.webui_packages import build_tree, make_venv_archive, make_zip, needs_venv_module

REPO = "NagisaNao/ANXETY"
COMFY_VENV = webui_info("comfyui").prebuilt["venv"]  # python31312-…: the name says 3.13, the venv is ours
SHARED_VENV = webui_info("forge").prebuilt["venv"]  # A1111, Forge and SD-UX name the same one


@pytest.fixture(autouse=True)
def _venvs_are_the_webuis_own(monkeypatch: pytest.MonkeyPatch) -> None:
    # The session points stub WebUIs at the test interpreter (tests/conftest.py); these tests
    # are about the venv an install links or builds, which that setting would override.
    monkeypatch.delenv("SDPANEL_WEBUI_PYTHON", raising=False)


@pytest.fixture
def hf(monkeypatch: pytest.MonkeyPatch):
    with HFServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        yield server


def _dirs(path: Path) -> list[Path]:
    """The unpacked venvs (and leftovers) under ``.venvs`` (its lock files aside)."""
    return [p for p in path.iterdir() if p.is_dir()] if path.exists() else []


def _warnings(svc: WebUIService) -> list[str]:
    return [e.message for e in svc.events if isinstance(e, LogEvent) and e.level == "warning"]  # type: ignore[attr-defined]


def _package(tmp_path: Path, name: str, flavour: str = "comfyui", *, needs_venv: bool = True) -> bytes:
    tree = build_tree(tmp_path / f"tree-{name}", flavour)
    if needs_venv:
        needs_venv_module(tree)
    return make_zip(tree, tmp_path / name, top=name.removesuffix(".zip")).read_bytes()


async def test_package_and_venv_archive_install_relocate_launch_reinstall(
        hf: HFServer, svc: WebUIService, tmp_path: Path) -> None:
    build = tmp_path / "builder" / "home"
    archive = make_venv_archive(tmp_path / COMFY_VENV, build)
    assert not build.exists()  # every path the venv names points at nothing now
    hf.add_file(REPO, "ComfyUI.zip", _package(tmp_path, "ComfyUI.zip"))
    hf.add_file(REPO, COMFY_VENV, archive.read_bytes())
    res = await svc.install("comfyui", extensions=False)
    wd = svc.webui_dir("comfyui")
    shared = svc.webuis_dir / ".venvs" / COMFY_VENV.removesuffix(".tar.lz4") / "venv"
    assert res.method == "package" and (wd / "venv").resolve() == shared.resolve()
    assert installed_info(wd)["venv_archive"] == COMFY_VENV  # type: ignore[index]
    # relocated: no path of the builder is left in the scripts or pyvenv.cfg
    for f in [shared / "pyvenv.cfg", *(p for p in (shared / "bin").iterdir() if not p.is_symlink())]:
        assert str(build) not in f.read_text(errors="replace"), f
    hello = subprocess.run([str(shared / "bin" / "hello-venv")], capture_output=True, text=True, check=True)
    assert hello.stdout.strip() == f"hello from {shared}"
    assert f"VIRTUAL_ENV='{shared}'" in (shared / "bin" / "activate").read_text() or \
        f'VIRTUAL_ENV="{shared}"' in (shared / "bin" / "activate").read_text()
    # the WebUI starts on that venv (the module only it holds), its bin first on PATH
    launched = await svc.launch("comfyui", port=0, cpu=True, env={"STUB_WEBUI_DELAY": "0.1"})
    assert launched.state == "ready"
    async with aiohttp.ClientSession() as s, s.get(f"{launched.local_url}/system_stats") as r:
        assert r.status == 200
    check = next(line for line in svc.logs("comfyui") if line.startswith("venv-check"))
    assert check.split()[1:] == [str(wd / "venv"), str(wd / "venv" / "bin")]
    await svc.stop("comfyui")
    # re-install: the package again, the intact venv not fetched again (bytes counted)
    venv_bytes = hf.bytes_served(REPO, COMFY_VENV)
    assert venv_bytes == archive.stat().st_size
    again = await svc.install("comfyui", replace=True, extensions=False)
    assert hf.bytes_served(REPO, COMFY_VENV) == venv_bytes
    assert hf.bytes_served(REPO, "ComfyUI.zip") == 2 * len(hf.payload(REPO, "ComfyUI.zip"))
    assert any("shared copy, not fetched again" in n for n in again.notes)
    assert (wd / "venv" / "bin" / "hello-venv").exists()


async def test_one_venv_archive_serves_every_webui_naming_it_counted_once(
        hf: HFServer, svc: WebUIService, tmp_path: Path) -> None:
    archive = make_venv_archive(tmp_path / SHARED_VENV, tmp_path / "build")
    hf.add_file(REPO, SHARED_VENV, archive.read_bytes())
    for name in ("Forge.zip", "SD-UX.zip"):
        hf.add_file(REPO, name, _package(tmp_path, name, "a1111", needs_venv=False))
    await asyncio.gather(svc.install("forge", extensions=False), svc.install("sd-ux", extensions=False))
    assert hf.bytes_served(REPO, SHARED_VENV) == archive.stat().st_size  # at the same time, fetched once
    forge, ux = svc.webui_dir("forge") / "venv", svc.webui_dir("sd-ux") / "venv"
    assert forge.resolve() == ux.resolve() and len(_dirs(svc.webuis_dir / ".venvs")) == 1
    # the Storage tab: the venv's bytes once, not once per WebUI
    rep = usage_report(svc.storage, webui_dirs={"forge": forge.parent, "sd-ux": ux.parent})
    venvs = sorted(w["venv"] for w in rep.webuis.values())
    assert venvs[0] == 0 and venvs[1] > 10_000


async def test_venv_for_a_python_this_host_lacks_builds_one_instead(
        hf: HFServer, svc: WebUIService, tmp_path: Path) -> None:
    archive = make_venv_archive(tmp_path / COMFY_VENV, tmp_path / "build", version="3.99.1")
    hf.add_file(REPO, "ComfyUI.zip", _package(tmp_path, "ComfyUI.zip", needs_venv=False))
    hf.add_file(REPO, COMFY_VENV, archive.read_bytes())
    res = await svc.install("comfyui", extensions=False, with_pip=False)
    [warning] = [w for w in _warnings(svc) if COMFY_VENV in w]
    assert "needs Python 3.99.1 (its pyvenv.cfg says so), which this machine lacks" in warning
    assert "building a venv for this machine's Python instead" in warning
    wd = svc.webui_dir("comfyui")
    venv = wd / "venv"
    assert venv.is_dir() and not venv.is_symlink()
    prefix = subprocess.run([str(venv / "bin" / "python"), "-c", "import sys; print(sys.prefix)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert prefix == str(venv)
    assert "venv built here" in res.notes[-1]
    assert _dirs(svc.webuis_dir / ".venvs") == []


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
async def test_broken_venv_archive_leaves_nothing_half_installed(
        damage: str, hf: HFServer, svc: WebUIService, tmp_path: Path) -> None:
    data = bytearray(make_venv_archive(tmp_path / COMFY_VENV, tmp_path / "build").read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        for i in range(len(data) // 3, len(data) // 3 + 64):
            data[i] ^= 0x5A
    hf.add_file(REPO, "ComfyUI.zip", _package(tmp_path, "ComfyUI.zip", needs_venv=False))
    hf.add_file(REPO, COMFY_VENV, bytes(data))
    await svc.install("comfyui", extensions=False, with_pip=False)
    [warning] = [w for w in _warnings(svc) if COMFY_VENV in w]
    assert warning.startswith(f"venv archive {COMFY_VENV} skipped: ")
    venvs = svc.webuis_dir / ".venvs"
    assert _dirs(venvs) == []  # no half venv, no .installing
    assert (svc.webui_dir("comfyui") / "venv" / "bin" / "python").exists()  # built instead
    assert "venv_built" in json.loads((svc.webui_dir("comfyui") / ".sdpanel-installed").read_text())


async def test_missing_prebuilt_is_skipped_with_its_reason_then_git(
        hf: HFServer, svc: WebUIService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    import sdpanel.webuis._service as service_mod
    from tests.fixtures.webui_packages import stub_repo

    repo, head = stub_repo(tmp_path / "repo")
    info = dataclasses.replace(webui_info("comfyui"), repository=f"file://{repo}", ref=None, commit=head)
    monkeypatch.setattr(service_mod, "webui_info", lambda _w: info)
    res = await svc.install("comfyui", extensions=False, with_pip=False)
    assert res.method == "git"
    [warning] = _warnings(svc)
    assert warning.startswith(f"prebuilt package ComfyUI.zip ({hf.endpoint}) failed: ")
    assert "HTTP 404" in warning and warning.endswith("trying the next source")
    assert installed_info(svc.webui_dir("comfyui"))["sources_skipped"] == [  # type: ignore[index]
        warning.removesuffix("; trying the next source")]
    assert not os.path.exists(svc.webuis_dir / ".venvs" / COMFY_VENV.removesuffix(".tar.lz4"))


def test_plain_cli_install_takes_package_and_venv_from_the_mirror(hf: HFServer, tmp_path: Path) -> None:
    """`sdpanel install comfyui` with nothing but the mirror set: the pair, then a launch on it."""
    import sys

    root = Path(__file__).resolve().parents[2]
    hf.add_file(REPO, "ComfyUI.zip", _package(tmp_path, "ComfyUI.zip"))
    hf.add_file(REPO, COMFY_VENV, make_venv_archive(tmp_path / COMFY_VENV, tmp_path / "build").read_bytes())
    env = {**os.environ, "SDPANEL_WEBUIS_DIR": str(tmp_path / "webuis"), "PYTHONPATH": str(root),
           "STUB_WEBUI_DELAY": "0.1"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sdpanel", *args, "--storage", str(tmp_path / "store")],
                              cwd=root, env=env, capture_output=True, text=True, timeout=120)

    out = cli("install", "comfyui", "--no-extensions")
    assert out.returncode == 0, out.stderr
    assert "(package, " in out.stdout
    assert f"venv: {COMFY_VENV} at {tmp_path / 'webuis' / '.venvs'}" in out.stdout and "(fetched)" in out.stdout
    try:
        up = cli("launch", "comfyui", "--wait", "--cpu", "--port", "0")
        assert up.returncode == 0, up.stdout + up.stderr
        logs = cli("logs", "comfyui").stdout
        wd = tmp_path / "webuis" / "comfyui"
        assert f"venv-check {wd / 'venv'} {wd / 'venv' / 'bin'}" in logs
    finally:
        cli("stop", "comfyui")


async def test_foreign_python_venv_is_refused_before_it_is_all_fetched(
        svc: WebUIService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its pyvenv.cfg comes out first: the download stops there, not after 64 MiB more."""
    from tests.fixtures.range_server import RangeServer

    archive = make_venv_archive(tmp_path / COMFY_VENV, tmp_path / "build", version="3.99.1",
                                filler=64 << 20, cfg_first=True)
    with RangeServer(rate=16 << 20) as srv:  # a full download would take 2 s or more
        srv.add_file(f"{REPO}/resolve/main/ComfyUI.zip", _package(tmp_path, "ComfyUI.zip", needs_venv=False))
        srv.add_file(f"{REPO}/resolve/main/{COMFY_VENV}", archive)
        monkeypatch.setenv("HF_ENDPOINT", srv.url("").rstrip("/"))
        await svc.install("comfyui", extensions=False, with_pip=False)
        [served] = [r["bytes_sent"] for r in srv.requests(path_contains=COMFY_VENV)]
    assert any("needs Python 3.99.1" in w for w in _warnings(svc))
    assert served < archive.stat().st_size // 2, (served, archive.stat().st_size)
    assert (svc.webui_dir("comfyui") / "venv" / "bin" / "python").exists()  # built instead


async def test_failing_package_url_setting_stops_with_every_reason(
        hf: HFServer, svc: WebUIService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sdpanel.webuis import InstallError

    monkeypatch.setenv("SDPANEL_WEBUI_PACKAGE_URL", f"{hf.endpoint}/nobody/none/resolve/main/x.zip")
    with pytest.raises(InstallError) as err:
        await svc.install("comfyui", extensions=False, with_pip=False)
    text = str(err.value)
    assert text.startswith("Download of comfyui failed: HTTP 404 from ")
    assert f"(the webui_package_url setting; prebuilt package ComfyUI.zip ({hf.endpoint}) failed: " in text
    assert not svc.webui_dir("comfyui").exists()  # and git was not tried behind the user's back
