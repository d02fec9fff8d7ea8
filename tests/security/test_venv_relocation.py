"""The venv fixer never writes outside the install (issue 17, item 1): a packed venv whose
``bin`` leads out through a link (plain or chained), a ``venv`` or ``pyvenv.cfg`` that is
a link out, a ``pyvenv.cfg`` naming another prefix. Before the fix, relocation rewrote the
scripts it found out there, and running one ran the archive's payload."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sdpanel.webuis import UnsafeArchiveError, install_package
from sdpanel.webuis._install import InstallResult, finish_install
from tests.fixtures.hostile_archives import tree_fingerprint, venv_through_chain, write_archive
from tests.fixtures.range_server import RangeServer

OLD = "/opt/builder/venv"
CFG = f"home = /opt/builder/bin\nversion = 3.11.7\ncommand = /opt/builder/bin/python -m venv {OLD}\n"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A venv-like folder outside the install, inside this test's tmp dir."""
    v = tmp_path / "victim"
    (v / "bin").mkdir(parents=True)
    (v / "bin" / "pip").write_text(f"#!{OLD}/bin/python\nprint('victim pip')\n")
    (v / "bin" / "pip").chmod(0o755)
    (v / "bin" / "activate").write_text(f"VIRTUAL_ENV='{OLD}'\n")
    (v / "pyvenv.cfg").write_text(CFG)
    return v


def _staging(tmp_path: Path) -> tuple[Path, Path]:
    staging = tmp_path / "webuis" / "comfyui.installing"
    (staging / "venv").mkdir(parents=True)
    (staging / "main.py").write_text("print('hi')\n")
    return staging, tmp_path / "webuis" / "comfyui"


def _bin_absolute_link(staging: Path, victim: Path) -> None:
    (staging / "venv" / "pyvenv.cfg").write_text(CFG)
    os.symlink(victim / "bin", staging / "venv" / "bin")


def _bin_through_chain(staging: Path, victim: Path) -> None:
    # a/b/up -> ../.. is the staging root; up/../../victim is its parent's parent's victim.
    (staging / "a" / "b").mkdir(parents=True)
    os.symlink("../..", staging / "a" / "b" / "up")
    rel = os.path.relpath(victim, staging.parent)
    os.symlink(f"up/../{rel}", staging / "a" / "b" / "esc")
    (staging / "venv" / "pyvenv.cfg").write_text(CFG)
    os.symlink("../a/b/esc/bin", staging / "venv" / "bin")


@pytest.mark.parametrize("shape", [_bin_absolute_link, _bin_through_chain])
def test_venv_bin_leading_outside_is_refused(shape, victim: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    staging, target = _staging(tmp_path)
    shape(staging, victim)
    assert (staging / "venv" / "bin" / "pip").is_file()  # the shape really reaches the victim
    before = tree_fingerprint(victim)
    with pytest.raises(UnsafeArchiveError) as ei:
        finish_install(staging, target, InstallResult("comfyui", str(target), "package", "t"),
                       replace=False)
    assert "leads outside the install folder" in str(ei.value)
    assert str(ei.value).count(". ") == 0  # one sentence
    assert tree_fingerprint(victim) == before  # not a byte changed out there
    assert not target.exists()
    assert (victim / "bin" / "pip").read_text().startswith(f"#!{OLD}/bin/python")


@pytest.mark.parametrize("what", ["venv", "pyvenv.cfg"])
def test_venv_or_cfg_that_is_a_link_out_is_not_followed(what: str, victim: Path,
                                                        tmp_path: Path) -> None:
    staging, target = _staging(tmp_path)
    if what == "venv":
        (staging / "venv").rmdir()
        os.symlink(victim, staging / "venv")
    else:
        (staging / "venv" / "bin").mkdir()
        os.symlink(victim / "pyvenv.cfg", staging / "venv" / "pyvenv.cfg")
    before = tree_fingerprint(victim)
    finish_install(staging, target, InstallResult("comfyui", str(target), "package", "t"),
                   replace=False)
    assert tree_fingerprint(victim) == before
    assert (target / "main.py").is_file()


def test_cfg_naming_another_prefix_rewrites_only_its_own_shebangs(tmp_path: Path) -> None:
    """``command = ... -m venv /usr`` must not turn ``#!/usr/bin/env python3`` into a path
    into the venv (every script of the package would break)."""
    staging, target = _staging(tmp_path)
    (staging / "venv" / "pyvenv.cfg").write_text(
        "home = /usr/bin\nversion = 3.11.7\ncommand = /usr/bin/python3 -m venv /usr\n")
    (staging / "venv" / "bin").mkdir()
    tool = staging / "venv" / "bin" / "tool"
    tool.write_text("#!/usr/bin/env python3\nprint('tool')\n")
    finish_install(staging, target, InstallResult("comfyui", str(target), "package", "t"),
                   replace=False)
    assert (target / "venv" / "bin" / "tool").read_text().startswith("#!/usr/bin/env python3\n")


@pytest.mark.parametrize("ext", ["zip", "tar.zst"])
async def test_packed_venv_through_a_chain_is_refused_at_install(ext: str, tmp_path: Path) -> None:
    """The whole attack as a package: the chain and ``venv/bin -> ../a/b/esc/bin``."""
    victim = tmp_path / "webuis" / "victim"
    (victim / "bin").mkdir(parents=True)
    (victim / "bin" / "pip").write_text(f"#!{OLD}/bin/python\n")
    (tmp_path / "pkgs").mkdir()
    arc = write_archive(tmp_path / "pkgs" / f"venv-chain.{ext}", venv_through_chain())
    before = tree_fingerprint(tmp_path, skip=tmp_path / "pkgs")
    with RangeServer() as srv:
        srv.add_file(arc.name, arc)
        with pytest.raises(UnsafeArchiveError, match="outside the install folder"):
            await install_package(srv.url(arc.name), tmp_path / "webuis" / "evil", webui="evil")
    assert tree_fingerprint(tmp_path, skip=tmp_path / "pkgs") == before
