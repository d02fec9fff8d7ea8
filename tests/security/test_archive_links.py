"""Hostile links in WebUI packages (issue 17, items 1 and 2): symlink chains whose texts
each look harmless, and CVE-2025-4517's PATH_MAX chain, in every package format, installed
the way a user installs (streamed from a server). The placement rule is ours for zip and
tar alike; tarfile's extraction filter is not used, so the interpreter we ship (3.11 here,
before the 3.11.13 fix) is as safe as a patched one."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sdpanel.webuis import UnsafeArchiveError, install_package
from tests.fixtures.hostile_archives import (
    link_chain,
    path_max_chain,
    tree_fingerprint,
    write_archive,
)
from tests.fixtures.range_server import RangeServer

FORMATS = ["zip", "tar.zst", "tar.lz4", "tar.gz"]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server():
    with RangeServer(rate=50_000_000) as srv:
        yield srv


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """Where every escape aims: beside the install folder, inside this test's tmp dir."""
    v = tmp_path / "webuis" / "victim"
    (v / "bin").mkdir(parents=True)
    (v / "canary.txt").write_text("untouched")
    return v


async def _install_refused(server: RangeServer, arc: Path, tmp_path: Path) -> str:
    server.add_file(arc.name, arc)
    target = tmp_path / "webuis" / "evil"
    before = tree_fingerprint(tmp_path, skip=tmp_path / "pkgs")
    with pytest.raises(UnsafeArchiveError) as ei:
        await install_package(server.url(arc.name), target, webui="evil")
    # Nothing anywhere in the tmp dir changed: no install, no staging, the victim as it was.
    assert tree_fingerprint(tmp_path, skip=tmp_path / "pkgs") == before
    return str(ei.value)


@pytest.mark.parametrize("ext", FORMATS)
async def test_link_chain_that_resolves_outside_is_refused(ext: str, server: RangeServer,
                                                           victim: Path, tmp_path: Path) -> None:
    (tmp_path / "pkgs").mkdir()
    arc = write_archive(tmp_path / "pkgs" / f"chain.{ext}", link_chain(payload=False))
    message = await _install_refused(server, arc, tmp_path)
    assert "pkg/a/b/esc" in message and "outside the install folder" in message
    assert message.count(". ") == 0  # one sentence


@pytest.mark.parametrize("ext", FORMATS)
async def test_file_written_through_a_link_chain_is_refused(ext: str, server: RangeServer,
                                                            victim: Path, tmp_path: Path) -> None:
    (tmp_path / "pkgs").mkdir()
    arc = write_archive(tmp_path / "pkgs" / f"chain-payload.{ext}", link_chain(payload=True))
    message = await _install_refused(server, arc, tmp_path)
    assert "Refused archive member 'pkg/a/b/esc" in message
    assert not (victim / "evil.txt").exists()


@pytest.mark.parametrize("ext", FORMATS)
async def test_path_max_link_chain_is_refused(ext: str, server: RangeServer, victim: Path,
                                              tmp_path: Path) -> None:
    """CVE-2025-4517's archive. On Python < 3.11.13 both tarfile's data filter and a
    realpath check let ``escape/evil.txt`` land in ``victim``."""
    (tmp_path / "pkgs").mkdir()
    arc = write_archive(tmp_path / "pkgs" / f"pathmax.{ext}", path_max_chain())
    message = await _install_refused(server, arc, tmp_path)
    assert "Refused archive member" in message
    assert not (victim / "evil.txt").exists()


@pytest.mark.parametrize("ext", FORMATS)
async def test_links_that_stay_inside_still_install(ext: str, server: RangeServer,
                                                    tmp_path: Path) -> None:
    """The rule does not refuse what real packages hold: a venv's ``lib64 -> lib``, a
    ``python3 -> python`` link, a link into a sibling folder, a link to a link."""
    (tmp_path / "pkgs").mkdir()
    members = [("pkg/main.py", b"print('hi')\n", None), ("pkg/venv/lib/site.py", b"x", None),
               ("pkg/venv/lib64", None, "lib"), ("pkg/venv/bin/python3", None, "python"),
               ("pkg/venv/bin/python", b"#!/bin/sh\n", None),
               ("pkg/models/ckpt", None, "../venv/lib64/site.py"),
               ("pkg/models/again", None, "ckpt")]
    arc = write_archive(tmp_path / "pkgs" / f"ok.{ext}", members)
    server.add_file(arc.name, arc)
    target = tmp_path / "webuis" / "ok"
    await install_package(server.url(arc.name), target, webui="ok")
    assert os.readlink(target / "venv" / "lib64") == "lib"
    assert (target / "models" / "again").read_bytes() == b"x"


@pytest.mark.parametrize("ext", FORMATS)
async def test_setuid_and_shared_write_bits_are_dropped(ext: str, server: RangeServer,
                                                        tmp_path: Path) -> None:
    (tmp_path / "pkgs").mkdir()
    arc = write_archive(tmp_path / "pkgs" / f"modes.{ext}",
                        [("pkg/main.py", b"print('hi')\n", None), ("pkg/run.sh", b"#!/bin/sh\n", None)],
                        mode=0o6777)
    server.add_file(arc.name, arc)
    await install_package(server.url(arc.name), tmp_path / "webuis" / "ok", webui="ok")
    assert stat.S_IMODE((tmp_path / "webuis" / "ok" / "run.sh").stat().st_mode) == 0o755


def test_cli_install_of_a_link_chain_prints_one_line(victim: Path, tmp_path: Path) -> None:
    (tmp_path / "pkgs").mkdir()
    arc = write_archive(tmp_path / "pkgs" / "chain.tar.zst", link_chain(payload=True))
    with RangeServer() as srv:
        srv.add_file(arc.name, arc)
        done = subprocess.run([sys.executable, "-m", "sdpanel", "install", "comfyui", "--from",
                               srv.url(arc.name), "--no-extensions", "--storage",
                               str(tmp_path / "store"), "--webuis-dir", str(tmp_path / "webuis")],
                              cwd=REPO, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Refused archive member 'pkg/a/b/esc/evil.txt'")
    assert sorted(p.name for p in (tmp_path / "webuis").iterdir()) == ["victim"]
    assert sorted(p.name for p in victim.iterdir()) == ["bin", "canary.txt"]
