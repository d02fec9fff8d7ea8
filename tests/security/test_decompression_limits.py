"""Decompression bombs and full disks (issue 17, item 6): a 1 MB zip and a 35 KB .tar.zst
that unpack to 1.1 GB stop early, in bounded memory, with one sentence; an honest package
larger than the free space stops before writing. Before: all 1.1 GB were written and the
zip reader peaked at 2.2 GB of memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sdpanel.webuis import install_package
from sdpanel.webuis._extract import ArchiveTooLargeError, ByteQueue, extract_stream
from tests.fixtures.disks import small_disk
from tests.fixtures.hostile_archives import (
    BOMB_SIZE,
    tar_zst_bomb,
    tree_fingerprint,
    write_tar,
    zip_bomb,
)
from tests.fixtures.range_server import RangeServer

REPO = Path(__file__).resolve().parents[2]
KINDS = {"zip": ("zip", "bomb.zip"), "zip-streamed": ("zip", "bomb-dd.zip"),
         "tar.zst": ("tar.zst", "bomb.tar.zst")}


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bombs")
    return {"zip": zip_bomb(d / "bomb.zip", streamed=False),
            "zip-streamed": zip_bomb(d / "bomb-dd.zip", streamed=True),
            "tar.zst": tar_zst_bomb(d / "bomb.tar.zst")}


def _one_sentence(message: str) -> None:
    assert message.count(". ") == 0 and message.endswith("."), message


@pytest.mark.parametrize("kind", list(KINDS))
def test_bomb_stops_early_in_bounded_memory(kind: str, bombs: dict[str, Path], tmp_path: Path) -> None:
    """In a fresh process, so its peak memory is its own; no limits passed (the default)."""
    arc = bombs[kind]
    assert arc.stat().st_size < 1_200_000 and 1000 * arc.stat().st_size < BOMB_SIZE
    out = subprocess.run([sys.executable, "-m", "tests.security._extract_probe", KINDS[kind][0],
                          str(arc), str(tmp_path / "x")], cwd=REPO, capture_output=True,
                         text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["error"] and "decompression bomb" in report["error"]
    _one_sentence(report["error"])
    assert report["written"] <= 160 << 20  # stopped at ~100x its size, not at 1.1 GB
    assert report["peak_rss"] < 256 << 20, report["peak_rss"]


@pytest.mark.parametrize("kind", list(KINDS))
async def test_bomb_install_refused_with_one_sentence(kind: str, bombs: dict[str, Path],
                                                      tmp_path: Path) -> None:
    arc = bombs[kind]
    before = tree_fingerprint(tmp_path)
    with RangeServer() as srv:
        srv.add_file(arc.name, arc)
        with pytest.raises(ArchiveTooLargeError) as ei:
            await install_package(srv.url(arc.name), tmp_path / "comfyui", webui="comfyui")
    message = str(ei.value)
    assert "times its 1.0 MiB size" in message or "times its 33.8 KiB size" in message, message
    _one_sentence(message)
    assert tree_fingerprint(tmp_path) == before  # no staging, no partial install


def _honest_tar_zst(path: Path, size: int) -> Path:
    """A real-looking package: ``size`` bytes of text that compresses about 2:1."""
    return write_tar(path, [("pkg/main.py", b"print('hi')\n", None),
                            ("pkg/lib/data.txt", os.urandom(size // 2).hex().encode(), None)])


def test_package_larger_than_the_free_space_stops_before_writing(tmp_path: Path) -> None:
    arc = _honest_tar_zst(tmp_path / "big.tar.zst", 64 << 20)
    with small_disk(tmp_path / "disk", "48m") as disk:
        q = ByteQueue()
        feeder = threading.Thread(target=lambda: (q.put(arc.read_bytes()), q.close()))
        feeder.start()
        with pytest.raises(ArchiveTooLargeError) as ei:
            extract_stream("tar.zst", q, disk / "comfyui")
        feeder.join()
        message = str(ei.value)
        assert message.startswith("Not enough free space to unpack the package: it needs more "
                                  "than 64.0 MiB")
        _one_sentence(message)
        assert not (disk / "comfyui" / "pkg" / "lib" / "data.txt").exists()


async def test_package_beyond_its_manifest_size_is_refused(tmp_path: Path) -> None:
    arc = _honest_tar_zst(tmp_path / "p.tar.zst", 40 << 20)
    with RangeServer() as srv:
        srv.add_file(arc.name, arc)
        with pytest.raises(ArchiveTooLargeError, match="its size manifest declares") as ei:
            await install_package(srv.url(arc.name), tmp_path / "comfyui", webui="comfyui",
                                  unpacked_size=1 << 20)
    _one_sentence(str(ei.value))
    assert not (tmp_path / "comfyui").exists() and not (tmp_path / "comfyui.installing").exists()


def test_cli_install_of_a_bomb_prints_one_line(bombs: dict[str, Path], tmp_path: Path) -> None:
    with RangeServer() as srv:
        srv.add_file("bomb.tar.zst", bombs["tar.zst"])
        done = subprocess.run([sys.executable, "-m", "sdpanel", "install", "comfyui", "--from",
                               srv.url("bomb.tar.zst"), "--no-extensions", "--storage",
                               str(tmp_path / "store"), "--webuis-dir", str(tmp_path / "webuis")],
                              cwd=REPO, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Refused the package: it unpacks to more "
                                                   "than 1.0 GiB, over 100 times its 33.8 KiB size")
    assert not list((tmp_path / "webuis").glob("comfyui*"))
