"""Install WebUI packages streamed from the local range server (zip, tar.zst, tar.lz4),
malicious archives, failures mid-way, relocated venvs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from sdpanel.runtime import EventBus, StateEvent
from sdpanel.webuis import (
    MARKER,
    ArchiveError,
    InstallError,
    UnsafeArchiveError,
    install_package,
    installed_info,
)
from tests.fixtures.range_server import Fault, RangeServer
from tests.fixtures.webui_packages import build_tree, make_malicious, make_tar, make_zip


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pkgs")
    tree = build_tree(d / "tree", venv=True, filler=3_000_000)
    return {
        "tree": tree,
        "zip": make_zip(tree, d / "ComfyUI.zip"),
        "zip-streamed": make_zip(tree, d / "ComfyUI-dd.zip", streamed=True),
        "tar.zst": make_tar(tree, d / "ComfyUI.tar.zst"),
        "tar.lz4": make_tar(tree, d / "ComfyUI.tar.lz4", codec="lz4"),
    }


@pytest.fixture
def server():
    with RangeServer(rate=20_000_000) as srv:
        yield srv


def _snapshot(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*")}


@pytest.mark.parametrize("kind", ["zip", "zip-streamed", "tar.zst", "tar.lz4"])
async def test_install_streamed_package(kind: str, packages: dict[str, Path], server: RangeServer,
                                        tmp_path: Path) -> None:
    server.add_file(packages[kind].name, packages[kind])
    events: list[StateEvent] = []
    bus = EventBus()
    bus.subscribe(lambda e: events.append(e) if isinstance(e, StateEvent) else None)
    target = tmp_path / "webuis" / "comfyui"
    result = await install_package(server.url(packages[kind].name), target, webui="comfyui",
                                   version="v-test", bus=bus)
    assert result.files >= 16
    # the single top folder was hoisted; content identical, modes kept
    assert (target / "main.py").read_bytes() == (packages["tree"] / "main.py").read_bytes()
    assert (target / "lib" / "part0001.so").read_bytes() == (packages["tree"] / "lib" / "part0001.so").read_bytes()
    assert os.access(target / "webui.sh", os.X_OK)
    assert not os.access(target / "requirements.txt", os.X_OK)
    # in-archive relative symlinks kept
    assert os.readlink(target / "venv" / "bin" / "python3") == "python"
    assert (target / "venv" / "lib64").is_symlink()
    # relocated venv: interpreter works, scripts' shebangs point here
    pip = target / "venv" / "bin" / "pip"
    assert pip.read_text().startswith(f"#!{target}/venv/bin/python\n")
    out = subprocess.run([str(pip)], capture_output=True, text=True, check=True).stdout
    assert out.startswith("pip ")
    assert f"home = {Path(os.path.realpath(__import__('sys').executable)).parent}" in (target / "venv" / "pyvenv.cfg").read_text()
    # the venv's own site-packages is live (its .pth brings the stub's aiohttp), whatever the
    # host Python has installed globally
    prefix = subprocess.run([str(target / "venv" / "bin" / "python"), "-c",
                             "import sys, aiohttp; print(sys.prefix)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert prefix == str(target / "venv")
    info = installed_info(target)
    assert info and info["version"] == "v-test" and info["method"] == "package"
    assert not (tmp_path / "webuis" / "comfyui.installing").exists()
    assert [e.state for e in events][-1] == "installed"
    # one GET, no temp archive anywhere
    assert len(server.requests(path_contains=packages[kind].name)) == 1
    assert not list(tmp_path.rglob("*.zip")) and not list(tmp_path.rglob("*.zst"))


@pytest.mark.parametrize("attack", ["dotdot", "absolute", "symlink"])
@pytest.mark.parametrize("ext", ["zip", "tar.zst", "tar.lz4"])
async def test_malicious_archive_refused(attack: str, ext: str, server: RangeServer,
                                         tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    arc = make_malicious(tmp_path / f"evil.{ext}", attack, outside)
    server.add_file(arc.name, arc)
    target = tmp_path / "webuis" / "evil"
    target.parent.mkdir()
    before = _snapshot(tmp_path)
    with pytest.raises(UnsafeArchiveError, match="Refused archive member"):
        await install_package(server.url(arc.name), target, webui="evil")
    assert not (outside / "evil.txt").exists()
    assert not target.exists()
    assert _snapshot(tmp_path) == before  # nothing left behind, staging removed


@pytest.mark.parametrize("kind", ["zip", "tar.zst"])
async def test_failure_midway_not_installed(kind: str, packages: dict[str, Path], server: RangeServer,
                                            tmp_path: Path) -> None:
    name = packages[kind].name
    server.add_file(name, packages[kind])
    server.add_fault(name, Fault("truncate", at=0.5))
    target = tmp_path / "comfyui"
    with pytest.raises((InstallError, ArchiveError)):
        await install_package(server.url(name), target, webui="comfyui")
    assert not target.exists() and installed_info(target) is None
    assert not (tmp_path / "comfyui.installing").exists()
    # reset mid-way too
    server.add_fault(name, Fault("reset", at=0.3))
    with pytest.raises((InstallError, ArchiveError)):
        await install_package(server.url(name), target, webui="comfyui")
    assert not target.exists()
    # and then a clean retry installs
    await install_package(server.url(name), target, webui="comfyui")
    assert (target / MARKER).is_file()


async def test_existing_install_needs_replace(packages: dict[str, Path], server: RangeServer,
                                              tmp_path: Path) -> None:
    server.add_file("p.tar.zst", packages["tar.zst"])
    target = tmp_path / "comfyui"
    await install_package(server.url("p.tar.zst"), target, webui="comfyui", version="1")
    n = len(server.requests(path_contains="p.tar.zst"))
    with pytest.raises(InstallError, match="already exists"):
        await install_package(server.url("p.tar.zst"), target, webui="comfyui", version="2")
    assert installed_info(target)["version"] == "1"
    assert len(server.requests(path_contains="p.tar.zst")) == n  # refused before downloading
    await install_package(server.url("p.tar.zst"), target, webui="comfyui", version="2", replace=True)
    assert installed_info(target)["version"] == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["comfyui"]


async def test_not_enough_space_refused_before_writing(packages: dict[str, Path], server: RangeServer,
                                                       tmp_path: Path) -> None:
    from sdpanel.storage import InsufficientSpaceError

    server.add_file("p.zip", packages["zip"])
    with pytest.raises(InsufficientSpaceError, match="unpacking comfyui"):
        await install_package(server.url("p.zip"), tmp_path / "c", webui="comfyui",
                              unpacked_size=1 << 60)
    assert list(tmp_path.iterdir()) == []


async def test_http_error_and_unknown_format(server: RangeServer, tmp_path: Path) -> None:
    with pytest.raises(InstallError, match="HTTP 404"):
        await install_package(server.url("missing.zip"), tmp_path / "c", webui="comfyui")
    server.add_file("notes.txt", b"hello world" * 100)
    with pytest.raises(ArchiveError, match="Unknown package format"):
        await install_package(server.url("notes.txt"), tmp_path / "c", webui="comfyui")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("ext", ["zip", "tar.zst"])
async def test_refusal_stops_the_download_early(ext: str, tmp_path: Path) -> None:
    """A bad member at the start of a big archive: refused at once, the rest never fetched."""
    import io
    import tarfile
    import zipfile

    big = os.urandom(16 << 20)
    arc = tmp_path / f"evil-big.{ext}"
    if ext == "zip":
        with zipfile.ZipFile(arc, "w") as zf:
            zf.writestr("pkg/../../escape.txt", b"x")
            zf.writestr("pkg/blob.bin", big)
    else:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            for name, data in (("pkg/../../escape.txt", b"x"), ("pkg/blob.bin", big)):
                ti = tarfile.TarInfo(name)
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
        arc.write_bytes(subprocess.run(["zstd", "-q", "-c", "-1"], input=buf.getvalue(),
                                       capture_output=True, check=True).stdout)
    with RangeServer(rate=4_000_000) as srv:
        srv.add_file(arc.name, arc)
        with pytest.raises(UnsafeArchiveError, match="escape.txt"):
            await install_package(srv.url(arc.name), tmp_path / "t", webui="evil")
        import asyncio

        await asyncio.sleep(0.3)
        sent = sum(r.get("bytes_sent") or 0 for r in srv.requests(path_contains=arc.name))
    assert sent < arc.stat().st_size // 2
    assert not (tmp_path / "t").exists() and not (tmp_path.parent / "escape.txt").exists()


@pytest.mark.parametrize("streamed", [False, True])
def test_zip64_and_stored_entries_stream(streamed: bool, tmp_path: Path) -> None:
    """zip64 local headers, data descriptors with 8-byte sizes and stored entries of unknown
    length (what streaming zip writers produce) all unpack through the streaming reader."""
    import threading
    import zipfile

    from sdpanel.webuis._extract import ByteQueue, extract_stream
    from tests.fixtures.webui_packages import _Unseekable

    arc = tmp_path / "z.zip"
    payload = os.urandom(300_000) + b"PK\x07\x08 fake descriptor inside data" + os.urandom(1000)
    with open(arc, "wb") as raw:
        target = _Unseekable(raw) if streamed else raw
        with zipfile.ZipFile(target, "w") as zf:  # type: ignore[arg-type]
            with zf.open(zipfile.ZipInfo("a/big64.bin"), "w", force_zip64=True) as f:
                f.write(payload)
            info = zipfile.ZipInfo("a/stored.bin")
            info.compress_type = zipfile.ZIP_STORED
            zf.writestr(info, payload)
            zf.writestr("a/deflated.txt", b"hello " * 1000, zipfile.ZIP_DEFLATED)
    q = ByteQueue()
    out: dict[str, object] = {}
    t = threading.Thread(target=lambda: out.update(r=extract_stream("zip", q, tmp_path / "x")))
    t.start()
    data = arc.read_bytes()
    for i in range(0, len(data), 7777):
        q.put(data[i:i + 7777])
    q.close()
    t.join(30)
    assert (tmp_path / "x" / "a" / "big64.bin").read_bytes() == payload
    assert (tmp_path / "x" / "a" / "stored.bin").read_bytes() == payload
    assert (tmp_path / "x" / "a" / "deflated.txt").read_bytes() == b"hello " * 1000
