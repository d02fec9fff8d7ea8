"""The git fallback from a local repository, and extensions with one broken entry."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sdpanel.runtime import EventBus, LogEvent
from sdpanel.webuis import Extension, installed_info
from sdpanel.webuis._git import (
    StepError,
    install_extensions,
    install_git,
    remove_extension,
    update_extension,
)
from tests.fixtures.webui_packages import make_git_repo, make_wheel, stub_repo


async def test_git_install_pinned_commit_venv_requirements(tmp_path: Path) -> None:
    repo, head = stub_repo(tmp_path / "src")
    wheels = tmp_path / "wheels"
    make_wheel(wheels)
    (repo / "requirements.txt").write_text("stubdep==1.0\n")
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-qam", "reqs"], check=True)
    pinned = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    # a later commit must not be what we get
    (repo / "later.txt").write_text("later")
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-qm", "later"], check=True)
    bus = EventBus()
    lines: list[str] = []
    bus.subscribe(lambda e: lines.append(e.message) if isinstance(e, LogEvent) else None)
    log = tmp_path / "install.log"
    target = tmp_path / "webuis" / "comfyui"
    res = await install_git(f"file://{repo}", target, webui="comfyui", commit=pinned, bus=bus,
                            log_path=log, with_pip=False,
                            pip_args=["--no-index", "--find-links", str(wheels)])
    assert res.version == pinned and installed_info(target)["method"] == "git"
    assert (target / "main.py").is_file() and not (target / "later.txt").exists()
    assert subprocess.run(["git", "-C", str(target), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip() == pinned
    out = subprocess.run([str(target / "venv" / "bin" / "python"), "-c",
                          "import stubdep, sys; print(stubdep.VERSION, sys.prefix)"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1.0", str(target / "venv")]  # the venv lives at the final path
    assert f"{target}/venv" in (target / "venv" / "pyvenv.cfg").read_text()
    text = log.read_text()
    assert "fetch --depth 1 origin" in text and "stubdep" in text
    assert any("Successfully installed stubdep" in line for line in lines)


async def test_git_install_failure_not_installed(tmp_path: Path) -> None:
    target = tmp_path / "comfyui"
    with pytest.raises(StepError, match="git fetch failed"):
        await install_git(f"file://{tmp_path}/nope", target, webui="comfyui", venv=False)
    assert not target.exists() and not (tmp_path / "comfyui.installing").exists()
    # a broken requirement: the step's output is in the error, nothing marked installed
    repo, _ = stub_repo(tmp_path / "src")
    (repo / "requirements.txt").write_text("definitely-not-a-package-xyz==9\n")
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-qam", "bad"], check=True)
    with pytest.raises(StepError, match="installing requirements.txt failed"):
        await install_git(f"file://{repo}", target, webui="comfyui", with_pip=False,
                          pip_args=["--no-index"])
    assert installed_info(target) is None and not target.exists()


async def test_extensions_parallel_one_broken(tmp_path: Path) -> None:
    wd = tmp_path / "ComfyUI"
    (wd / "custom_nodes").mkdir(parents=True)
    good1, _ = make_git_repo(tmp_path / "n1", {"__init__.py": "NODE_CLASS_MAPPINGS = {}\n"})
    good2, _ = make_git_repo(tmp_path / "n2", {"__init__.py": "x = 1\n", "requirements.txt": ""}, commits=2)
    exts = [Extension("good-one", f"file://{good1}"), Extension("broken", f"file://{tmp_path}/missing"),
            Extension("good-two", f"file://{good2}")]
    results = await install_extensions(wd, exts, extensions_dir="custom_nodes", webui="comfyui",
                                       log_path=tmp_path / "ext.log")
    by = {r.name: r for r in results}
    assert by["good-one"].ok and by["good-two"].ok
    assert not by["broken"].ok and "git fetch failed" in by["broken"].error
    assert (wd / "custom_nodes" / "good-one" / "__init__.py").is_file()
    assert not (wd / "custom_nodes" / "broken").exists()
    assert sorted(p.name for p in (wd / "custom_nodes").iterdir()) == ["good-one", "good-two"]
    # update to a new upstream commit, then remove
    (good1 / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {'x': 1}\n")
    subprocess.run(["git", "-C", str(good1), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "-qam", "v2"], check=True)
    upd = await update_extension(wd, "good-one", extensions_dir="custom_nodes")
    assert upd.ok and "'x': 1" in (wd / "custom_nodes" / "good-one" / "__init__.py").read_text()
    assert remove_extension(wd, "good-two", extensions_dir="custom_nodes").ok
    assert not (wd / "custom_nodes" / "good-two").exists()
    with pytest.raises(ValueError, match="plain folder name"):
        remove_extension(wd, "../ComfyUI", extensions_dir="custom_nodes")
