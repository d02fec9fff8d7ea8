"""Update and switch, as sdAIgen offers them: fast-forward keeping local changes, refuse
(changing nothing) when an edit would be overwritten, switch to a tag / branch / commit,
extensions moved too, the install marker naming what is really checked out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sdpanel.webuis import WebUIService, installed_info
from tests.fixtures.webui_packages import STUB, make_git_repo

ROOT = Path(__file__).resolve().parents[2]
_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t"}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=_ENV).stdout.strip()


def _commit(repo: Path, files: dict[str, str], message: str) -> str:
    for rel, text in files.items():
        (repo / rel).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def origin(tmp_path: Path) -> tuple[Path, str]:
    repo, first = make_git_repo(tmp_path / "origin", {"main.py": STUB.read_text(), "requirements.txt": "",
                                                      "config.txt": "steps = 20\n"})
    _git(repo, "tag", "v1")
    return repo, first


async def test_update_keeps_local_changes_and_refuses_conflicts(
        svc: WebUIService, origin: tuple[Path, str], tmp_path: Path) -> None:
    repo, first = origin
    await svc.install("comfyui", source=f"file://{repo}#main", extensions=False, with_pip=False)
    wd = svc.webui_dir("comfyui")
    node, _ = make_git_repo(tmp_path / "node", {"__init__.py": "NODE_CLASS_MAPPINGS = {}\n"})
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{node}", str(wd / "custom_nodes" / "node")],
                   check=True)
    node_tip = _commit(node, {"__init__.py": "NODE_CLASS_MAPPINGS = {'x': 1}\n"}, "node 2")
    second = _commit(repo, {"main.py": STUB.read_text() + "\n# v2\n"}, "v2")
    (wd / "config.txt").write_text("steps = 30\n")  # the user's edit, in a file v2 leaves alone
    (wd / "my_notes.txt").write_text("mine\n")
    res = await svc.update("comfyui")
    assert [r.ok for r in res] == [True, True]
    assert (res[0].old, res[0].new) == (first, second) and res[0].kept_changes == ["config.txt"]
    assert res[1].name == "node" and res[1].new == node_tip
    assert (wd / "main.py").read_text().endswith("# v2\n")
    assert (wd / "config.txt").read_text() == "steps = 30\n" and (wd / "my_notes.txt").exists()
    assert installed_info(wd)["version"] == second  # type: ignore[index]
    # an edit to a file the update changes: refused, nothing moved, the edit intact
    _commit(repo, {"main.py": STUB.read_text() + "\n# v3\n"}, "v3")
    (wd / "main.py").write_text("my own launcher\n")
    [refused, _node] = await svc.update("comfyui")
    assert not refused.ok
    assert refused.error.startswith("local changes in main.py conflict with main: nothing was changed;")
    assert _git(wd, "rev-parse", "HEAD") == second and (wd / "main.py").read_text() == "my own launcher\n"
    assert installed_info(wd)["version"] == second  # type: ignore[index]


async def test_switch_to_tag_commit_branch_marker_follows(
        svc: WebUIService, origin: tuple[Path, str]) -> None:
    repo, first = origin
    second = _commit(repo, {"main.py": STUB.read_text() + "\n# v2\n"}, "v2")
    await svc.install("comfyui", source=f"file://{repo}#main", extensions=False, with_pip=False)
    wd = svc.webui_dir("comfyui")
    [to_tag] = await svc.update("comfyui", ref="v1")
    assert to_tag.ok and to_tag.new == first
    info = installed_info(wd)
    assert info and (info["version"], info["ref"]) == (first, "v1")
    [to_commit] = await svc.update("comfyui", ref=second)
    assert to_commit.ok and _git(wd, "rev-parse", "HEAD") == second
    assert installed_info(wd)["ref"] == ""  # type: ignore[index]
    third = _commit(repo, {"config.txt": "steps = 25\n"}, "v3")
    [to_branch] = await svc.update("comfyui", ref="main")
    assert to_branch.ok and installed_info(wd)["version"] == third  # type: ignore[index]
    [bad] = await svc.update("comfyui", ref="no-such-tag")
    assert not bad.ok and bad.error.startswith("git could not fetch 'no-such-tag' from origin")
    assert bad.error.endswith("check the tag, branch or commit name and the network")


def test_cli_update_and_switch(origin: tuple[Path, str], tmp_path: Path) -> None:
    repo, first = origin
    env = {**os.environ, "SDPANEL_WEBUIS_DIR": str(tmp_path / "webuis"), "PYTHONPATH": str(ROOT)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sdpanel", *args, "--storage", str(tmp_path / "store")],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    assert cli("install", "comfyui", "--from", f"file://{repo}#main", "--no-extensions").returncode == 0
    second = _commit(repo, {"config.txt": "steps = 40\n"}, "v2")
    up = cli("update", "comfyui")
    assert up.returncode == 0 and f"comfyui: {first[:12]} -> {second[:12]} (main)" in up.stdout
    again = cli("update", "comfyui")
    assert f"comfyui: already at {second[:12]} (main)" in again.stdout
    sw = cli("switch", "comfyui", "v1")
    assert sw.returncode == 0 and f"comfyui: {second[:12]} -> {first[:12]} (v1)" in sw.stdout
    bad = cli("switch", "comfyui", "nope")
    assert bad.returncode == 1 and "git could not fetch 'nope' from origin" in bad.stderr


async def test_package_with_its_git_records_its_commit_and_updates(
        svc: WebUIService, origin: tuple[Path, str], tmp_path: Path) -> None:
    """The prebuilt zips hold the WebUI with its .git: the marker names that commit (not the
    registry's pin) and `update` moves it like a git install."""
    from tests.fixtures.range_server import RangeServer
    from tests.fixtures.webui_packages import make_zip

    repo, first = origin
    tree = tmp_path / "ComfyUI"
    subprocess.run(["git", "clone", "-q", f"file://{repo}", str(tree)], check=True)
    pkg = make_zip(tree, tmp_path / "ComfyUI.zip")
    with RangeServer() as srv:
        srv.add_file(pkg.name, pkg)
        res = await svc.install("comfyui", source=srv.url(pkg.name), extensions=False)
    wd = svc.webui_dir("comfyui")
    assert res.version == first
    info = installed_info(wd)
    assert info and (info["method"], info["version"], info["ref"]) == ("package", first, "main")
    second = _commit(repo, {"config.txt": "steps = 50\n"}, "v2")
    [moved] = await svc.update("comfyui")
    assert moved.ok and (moved.old, moved.new) == (first, second)
    assert installed_info(wd)["version"] == second  # type: ignore[index]


async def test_update_of_a_package_without_git_says_how_to_fix(svc: WebUIService, tmp_path: Path) -> None:
    from tests.fixtures.range_server import RangeServer
    from tests.fixtures.webui_packages import build_tree, make_zip

    pkg = make_zip(build_tree(tmp_path / "tree"), tmp_path / "ComfyUI.zip")
    with RangeServer() as srv:
        srv.add_file(pkg.name, pkg)
        await svc.install("comfyui", source=srv.url(pkg.name), extensions=False)
    [res] = await svc.update("comfyui", ref="v1")
    assert not res.ok and res.error.endswith("is not a git checkout (the package holds no .git): "
                                             "reinstall it from git to update or switch it")
