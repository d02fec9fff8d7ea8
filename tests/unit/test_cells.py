"""What the notebook cells call: tool checks with real (fake-PATH) apt-get, headless
detection, settings resolution from the cell's namespace."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import sdpanel.cells as cells
from sdpanel.cells import current_settings, ensure_aria2c, is_headless, prepare
from sdpanel.settings._secrets import _reset_for_tests


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    _reset_for_tests()
    for name in list(os.environ):
        if name.startswith("SDPANEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SDPANEL_STORAGE", str(tmp_path / "store"))
    monkeypatch.setenv("SDPANEL_PLATFORM", "local")
    yield
    _reset_for_tests()
    cells._settings_cell._namespace = None


def _script(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))  # no aria2c, no apt-get unless a test adds one
    return folder


def test_aria2c_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    folder = _bin(tmp_path, monkeypatch)
    _script(folder, "aria2c", "exit 0")
    check = ensure_aria2c()
    assert check.path == str(folder / "aria2c")


def test_aria2c_missing_without_apt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _bin(tmp_path, monkeypatch)
    check = ensure_aria2c()
    assert check.path is None
    assert check.message.startswith("aria2c not found; downloads use the pure-Python engine")
    assert "no apt-get" in check.message


def test_aria2c_installed_with_apt_get(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    folder = _bin(tmp_path, monkeypatch)
    log = tmp_path / "apt.log"
    # A stand-in apt-get that "installs" aria2 by creating the binary, and logs its calls.
    _script(folder, "apt-get", f'echo "$DEBIAN_FRONTEND $*" >> {log}\n'
            f'printf "#!/bin/sh\\nexit 0\\n" > {folder}/aria2c; /bin/chmod +x {folder}/aria2c')
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    check = ensure_aria2c()
    assert check.path == str(folder / "aria2c")
    assert "installed with apt-get" in check.message
    assert log.read_text().startswith("noninteractive install -y")


def test_aria2c_apt_failure_is_a_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    folder = _bin(tmp_path, monkeypatch)
    log = tmp_path / "apt.log"
    _script(folder, "apt-get", f'echo "$*" >> {log}\necho "E: Unable to locate package aria2" >&2\n'
            "exit 100")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    check = ensure_aria2c()
    assert check.path is None
    assert "apt-get install aria2 failed: E: Unable to locate package aria2" in check.message
    calls = log.read_text().splitlines()  # install, update, install again
    assert [c.split()[0] for c in calls] == ["install", "update", "install"]


def test_aria2c_not_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    folder = _bin(tmp_path, monkeypatch)
    _script(folder, "apt-get", "exit 0")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "not root" in ensure_aria2c().message


def test_setup_prepares_storage_and_prints_a_summary(tmp_path: Path, capsys) -> None:
    report = prepare(install_tools=False)
    store = tmp_path / "store"
    assert report.storage_root == str(store.resolve())
    assert (store / ".sdpanel" / "pids").is_dir()
    cells.setup(install_tools=False)
    out = capsys.readouterr().out
    assert "platform  local" in out and str(store.resolve()) in out and "aria2c" in out
    assert len(out) < 2000


def test_headless_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_headless()  # pytest: not inside a kernel
    monkeypatch.setenv("SDPANEL_HEADLESS", "0")
    assert not is_headless()
    monkeypatch.setenv("SDPANEL_HEADLESS", "1")
    assert is_headless()


def test_settings_cell_prints_settings_with_secrets_masked(capsys) -> None:
    token = "cell-field-token-123456"
    namespace = {"WEBUI": "forge", "MODEL_LINKS": "https://a.example/x, https://b.example/y",
                 "CIVITAI_TOKEN": token, "HF_TOKEN": "", "unrelated": object()}
    assert cells.settings(namespace) is None
    out = capsys.readouterr().out
    assert "webui" in out and "forge" in out and "https://b.example/y" in out
    assert token not in out
    assert "CIVITAI_TOKEN" in out and "set (panel)" in out
    assert current_settings().webui == "forge"
    namespace["WEBUI"] = "sdnext"  # a later change (papermill's injected cell) counts
    assert current_settings().webui == "sdnext"


def test_untouched_fields_leave_environment_settings_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDPANEL_WEBUI", "forge")
    monkeypatch.setenv("SDPANEL_TUNNEL", "ngrok")
    cells._settings_cell._namespace = {"WEBUI": "comfyui", "TUNNEL": "zrok"}
    resolved = current_settings()
    assert resolved.webui == "forge"  # the cell's default does not hide the environment
    assert resolved.tunnel == "zrok"  # a value the user changed wins


def test_bad_parameter_names_the_setting() -> None:
    from sdpanel.settings import SettingsError

    cells._settings_cell._namespace = {"WEBUI": "photoshop"}
    with pytest.raises(SettingsError, match="webui"):
        current_settings()
