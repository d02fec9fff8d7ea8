"""Platform detection: every row of reference/platforms.md faked with env + a fake file system."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdpanel.platforms import PlatformError, checkout_dir, detect_platform, platform_names


def _fs(root: Path, *dirs: str) -> Path:
    for d in dirs:
        (root / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
    return root


def test_every_reference_row_is_in_the_table() -> None:
    assert platform_names() == ["colab", "kaggle", "lightning", "paperspace", "studiolab",
                                "runpod", "vast", "local"]


@pytest.mark.parametrize(("env", "dirs", "name", "storage", "work", "persistent", "lab", "reach",
                          "secrets"), [
    # Colab without Drive: fast local disk; with Drive mounted: Drive (see below)
    ({"COLAB_RELEASE_TAG": "release-colab_2024"}, ["/content"], "colab", "/content/sdpanel",
     "/content", None, False, "tunnel", "colab"),
    ({"COLAB_GPU": "1"}, ["/content"], "colab", "/content/sdpanel", "/content", None, False,
     "tunnel", "colab"),
    ({"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}, ["/kaggle/working", "/kaggle/temp"], "kaggle",
     "/kaggle/temp/sdpanel", "/kaggle/temp", "/kaggle/working", True, "tunnel", "kaggle"),
    ({"KAGGLE_URL_BASE": "https://www.kaggle.com"}, ["/kaggle/working"], "kaggle",
     "/tmp/sdpanel", "/kaggle/temp", "/kaggle/working", True, "tunnel", "kaggle"),
    ({"LIGHTNING_CLOUD_PROJECT_ID": "01abc"}, ["/teamspace/studios/this_studio"], "lightning",
     "/teamspace/studios/this_studio/sdpanel", "/teamspace/studios/this_studio",
     "/teamspace/studios/this_studio", True, "proxy", "env"),
    ({}, ["/teamspace/studios/this_studio"], "lightning",
     "/teamspace/studios/this_studio/sdpanel", "/teamspace/studios/this_studio",
     "/teamspace/studios/this_studio", True, "proxy", "env"),
    ({"PAPERSPACE_NOTEBOOK_REPO_ID": "x1"}, ["/notebooks", "/storage"], "paperspace",
     "/storage/sdpanel", "/tmp", "/storage", True, "proxy", "env"),
    ({"PAPERSPACE_CLUSTER_ID": "c1"}, ["/notebooks"], "paperspace", "/notebooks/sdpanel", "/tmp",
     "/notebooks", True, "proxy", "env"),
    ({}, ["/notebooks", "/storage"], "paperspace", "/storage/sdpanel", "/tmp", "/storage", True,
     "proxy", "env"),
    ({}, ["/home/studio-lab-user"], "studiolab", "/home/studio-lab-user/sdpanel-storage", "/tmp",
     "/home/studio-lab-user", True, "proxy", "env"),
    ({"RUNPOD_POD_ID": "abc123"}, ["/workspace"], "runpod", "/workspace/sdpanel", "/tmp",
     "/workspace", True, "proxy", "env"),
    ({"VAST_CONTAINERLABEL": "C.123"}, ["/workspace"], "vast", "/workspace/sdpanel", "/tmp",
     "/workspace", True, "proxy", "env"),
])
def test_each_platform_row(tmp_path: Path, env: dict, dirs: list[str], name: str, storage: str,
                           work: str, persistent: str | None, lab: bool, reach: str,
                           secrets: str) -> None:
    fs = _fs(tmp_path, *dirs)
    info = detect_platform(env={"HOME": "/root", **env}, fs_root=fs)
    assert info.name == name, info.reason
    assert info.storage_root == fs / storage.lstrip("/")
    assert info.work_dir == fs / work.lstrip("/")
    assert info.persistent_dir == (fs / persistent.lstrip("/") if persistent else None)
    assert info.lab_extensions is lab
    assert info.reach == reach
    assert info.secrets == secrets
    assert info.reason  # says which marker matched
    assert info.label


def test_studiolab_detected_by_home_variable(tmp_path: Path) -> None:
    info = detect_platform(env={"HOME": "/home/studio-lab-user"}, fs_root=tmp_path)
    assert info.name == "studiolab"
    assert info.reason == "HOME=/home/studio-lab-user"


def test_colab_with_drive_mounted_stores_on_drive(tmp_path: Path) -> None:
    fs = _fs(tmp_path, "/content/drive/MyDrive")
    info = detect_platform(env={"COLAB_GPU": "1"}, fs_root=fs)
    assert info.storage_root == fs / "content/drive/MyDrive/sdpanel"
    assert info.persistent_dir == fs / "content/drive/MyDrive"
    assert info.reach == "tunnel" and info.lab_extensions is False


def test_colab_detected_by_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    google = types.ModuleType("google")
    colab = types.ModuleType("google.colab")
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    info = detect_platform(env={}, fs_root=tmp_path)
    assert info.name == "colab"
    assert info.reason == "module google.colab"


def test_partial_path_markers_do_not_match(tmp_path: Path) -> None:
    # /notebooks alone is common in containers; Paperspace needs /storage as well (or its env)
    fs = _fs(tmp_path, "/notebooks", "/teamspace")
    assert detect_platform(env={"HOME": str(tmp_path / "home")}, fs_root=fs).name == "local"


def test_empty_marker_variables_do_not_count(tmp_path: Path) -> None:
    assert detect_platform(env={"RUNPOD_POD_ID": "", "HOME": "/root"}, fs_root=tmp_path).name == "local"


def test_local_uses_checkout_storage(tmp_path: Path) -> None:
    info = detect_platform(env={"HOME": str(tmp_path)}, fs_root=tmp_path)
    assert info.name == "local"
    checkout = checkout_dir()
    assert checkout is not None and (checkout / "pyproject.toml").is_file()  # tests run from one
    assert info.storage_root == checkout / "storage"
    assert info.work_dir == info.storage_root == info.persistent_dir
    assert info.reach == "proxy" and info.lab_extensions is True


def test_local_without_checkout_uses_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sdpanel.platforms import _detect

    monkeypatch.setattr(_detect, "checkout_dir", lambda: None)
    info = detect_platform(env={"HOME": str(tmp_path / "me")}, fs_root=tmp_path)
    assert info.storage_root == tmp_path / "me" / "sdpanel-storage"


def test_sdpanel_platform_forces_a_row(tmp_path: Path) -> None:
    fs = _fs(tmp_path, "/workspace")
    info = detect_platform(env={"SDPANEL_PLATFORM": "RunPod", "COLAB_GPU": "1"}, fs_root=fs)
    assert info.name == "runpod"
    assert info.reason == "SDPANEL_PLATFORM"
    auto = detect_platform(env={"SDPANEL_PLATFORM": "auto", "COLAB_GPU": "1"}, fs_root=fs)
    assert auto.name == "colab"


def test_unknown_forced_platform_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(PlatformError, match="SDPANEL_PLATFORM='moon'.*colab, kaggle"):
        detect_platform(env={"SDPANEL_PLATFORM": "moon"}, fs_root=tmp_path)


def test_sdpanel_storage_overrides_root_only(tmp_path: Path) -> None:
    fs = _fs(tmp_path, "/kaggle/working", "/kaggle/temp")
    info = detect_platform(env={"KAGGLE_KERNEL_RUN_TYPE": "Batch",
                                "SDPANEL_STORAGE": str(tmp_path / "big")}, fs_root=fs)
    assert info.name == "kaggle"
    assert info.storage_root == tmp_path / "big"
    assert info.persistent_dir == fs / "kaggle/working"  # the platform's, unchanged
    assert "SDPANEL_STORAGE" in info.reason
    home = detect_platform(env={"SDPANEL_STORAGE": "~/models", "HOME": "/home/u"}, fs_root=fs)
    assert home.storage_root == Path("/home/u/models")


def test_precedence_of_rows_colab_before_others(tmp_path: Path) -> None:
    fs = _fs(tmp_path, "/workspace")
    info = detect_platform(env={"COLAB_GPU": "1", "RUNPOD_POD_ID": "x"}, fs_root=fs)
    assert info.name == "colab"


def test_to_dict_is_json_safe(tmp_path: Path) -> None:
    import json

    d = detect_platform(env={"VAST_CONTAINERLABEL": "C.1"}, fs_root=tmp_path).to_dict()
    assert json.loads(json.dumps(d))["reach"] == "proxy"
