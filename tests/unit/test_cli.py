"""The ``sdpanel`` command: discovery, status, notebook --check, lab's command line and
one-line redacted errors."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sdpanel.cli import build_parser, main
from sdpanel.cli.cmd_lab import lab_command
from sdpanel.notebook import notebook_text

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "store"
    monkeypatch.setenv("SDPANEL_STORAGE", str(root))
    monkeypatch.setenv("SDPANEL_PLATFORM", "local")
    return root


def test_sub_commands_are_discovered() -> None:
    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert {"status", "notebook", "lab"} <= set(actions[0].choices)


def test_status_json(storage: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pids = storage / ".sdpanel" / "pids"
    pids.mkdir(parents=True)
    (pids / "aria2.json").write_text(json.dumps({"pid": os.getpid(), "port": 6800}))
    assert main(["status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["platform"]["name"] == "local"
    assert data["storage"]["root"] == str(storage.resolve())
    assert data["storage"]["free_bytes"] > 0
    assert {"cpu", "ram", "gpu", "disk"} <= set(data["system"])
    assert data["processes"][0]["name"] == "aria2" and data["processes"][0]["alive"] is True
    assert isinstance(data["version"], str) and data["errors"] == {}


def test_status_human(storage: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "platform  local" in out
    assert f"storage   {storage.resolve()}" in out
    assert "processes none recorded" in out


def test_notebook_check_passes_on_the_committed_notebook(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["notebook", "--check"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_notebook_check_names_the_difference(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "SDPanel.ipynb"
    assert main(["notebook", "--output", str(target)]) == 0
    assert target.read_text() == notebook_text()
    assert main(["notebook", "--check", "--output", str(target)]) == 0
    target.write_text(target.read_text().replace('WEBUI = \\"comfyui\\"', 'WEBUI = \\"forge\\"'))
    capsys.readouterr()
    assert main(["notebook", "--check", "--output", str(target)]) == 1
    err = capsys.readouterr().err
    assert 'WEBUI = \\"forge\\"' in err and 'WEBUI = \\"comfyui\\"' in err
    assert "run `sdpanel notebook`" in err
    assert main(["notebook", "--check", "--output", str(tmp_path / "none.ipynb")]) == 1


def test_expected_errors_are_printed_whole_and_redacted(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    token = os.environ["CIVITAI_TOKEN"]  # planted by tests/conftest.py

    def boom(_root: object = None) -> dict[str, object]:
        raise OSError(f"cannot read https://civitai.com/api?token={token}\nsecond line")

    monkeypatch.setattr("sdpanel.status.gather_status", boom)  # imported when run
    assert main(["status"]) == 1
    err = capsys.readouterr().err
    # Every line of the message (causes follow on the next lines), no traceback.
    assert err.startswith("error: cannot read") and err.endswith("\nsecond line\n")
    assert token not in err and "Traceback" not in err


def test_unwritable_output_is_an_error_not_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["notebook", "--output", str(blocker / "sub" / "SDPanel.ipynb")]) == 1
    assert capsys.readouterr().err.startswith("error: ")


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout of our own (pyproject + committed notebook): `sdpanel lab` writes its
    working copy into it, and a test must not write into the real one."""
    root = tmp_path / "checkout"
    (root / "notebook").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "sdpanel"\n')
    (root / "notebook" / "SDPanel.ipynb").write_text(notebook_text())
    monkeypatch.setattr("sdpanel.platforms.checkout_dir", lambda: root)
    return root


def test_lab_opens_a_working_copy_and_keeps_the_committed_notebook_clean(
        storage: Path, checkout: Path) -> None:
    from sdpanel.cli.cmd_lab import notebook_dir

    args = argparse.Namespace(port=None, no_browser=True, jupyter_args=[])
    argv, env = lab_command(args)
    work = checkout / "workspace"
    assert f"--ServerApp.root_dir={work}" in argv
    copy = work / "SDPanel.ipynb"
    assert copy.read_text() == notebook_text()
    copy.write_text(copy.read_text().replace("comfyui", "forge"))  # outputs, edits: the copy's
    assert notebook_dir() == work and "forge" in copy.read_text()
    assert (checkout / "notebook" / "SDPanel.ipynb").read_text() == notebook_text()
    # The lab we launch has no "Jupyter news" notice over the Panel (page config on our path).
    first = Path(env["JUPYTER_CONFIG_PATH"].split(os.pathsep)[0])
    page = json.loads((first / "labconfig" / "page_config.json").read_text())
    assert page["disabledExtensions"]["@jupyterlab/apputils-extension:announcements"] is True
    assert storage.resolve() in first.resolve().parents


def test_what_using_the_product_writes_is_git_ignored(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitignore").write_text((ROOT / ".gitignore").read_text())
    made = ["workspace/SDPanel.ipynb", "webuis/comfyui/main.py", "notebook/.ipynb_checkpoints/SDPanel-checkpoint.ipynb"]
    done = subprocess.run(["git", "-C", str(repo), "check-ignore", *made], capture_output=True, text=True)
    assert done.stdout.split() == made


def test_make_lab_takes_a_port() -> None:
    done = subprocess.run(["make", "-n", "-C", str(ROOT), "lab", "PORT=8899", "-o", "setup"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "sdpanel lab --port 8899" in done.stdout, done.stdout + done.stderr


def test_lab_command_line(storage: Path, checkout: Path) -> None:
    args = argparse.Namespace(port=8899, no_browser=True,
                              jupyter_args=["--", "--IdentityProvider.token=abc"])
    argv, env = lab_command(args)
    assert argv[1:3] == ["-m", "jupyterlab"]
    assert f"--ServerApp.root_dir={checkout / 'workspace'}" in argv  # a working copy, not notebook/
    assert "--LabApp.default_url=/lab/tree/SDPanel.ipynb" in argv
    assert "--ServerApp.jpserver_extensions=sdpanel.server=True" in argv
    assert "--ServerApp.port=8899" in argv and "--ServerApp.open_browser=False" in argv
    assert argv[-1] == "--IdentityProvider.token=abc"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)
    ext = [a for a in argv if a.startswith("--LabApp.extra_labextensions_path=")]
    built = ROOT / "sdpanel" / "labextension"
    if (built / "package.json").is_file():  # from a checkout the fresh build is served first
        assert len(ext) == 1
        link = Path(ext[0].split("=", 1)[1]) / "sdpanel"
        assert link.resolve() == built and (link / "package.json").is_file()
        assert storage.resolve() in link.parents


def test_python_dash_m_and_version() -> None:
    done = subprocess.run([sys.executable, "-m", "sdpanel", "--version"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("sdpanel ")
    done = subprocess.run([sys.executable, "-m", "sdpanel"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "status" in done.stdout


def test_lab_from_a_wheel_serves_a_generated_copy(storage: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Installed without a checkout, `sdpanel lab` writes the notebook into the work dir
    once and keeps the user's edits on the next start."""
    from sdpanel.cli.cmd_lab import notebook_dir

    monkeypatch.setattr("sdpanel.platforms.checkout_dir", lambda: None)
    folder = notebook_dir()
    copy = folder / "SDPanel.ipynb"
    assert folder == storage / "sdpanel-notebook"
    assert copy.read_text() == notebook_text()
    copy.write_text(copy.read_text().replace("comfyui", "forge"))
    assert notebook_dir() == folder and "forge" in copy.read_text()
    monkeypatch.setenv("SDPANEL_DEBUG", "1")  # raise instead of printing, to see the cause
    with pytest.raises(FileNotFoundError, match="--output"):
        main(["notebook", "--check"])
