"""System monitor: clear no-GPU state, JSON-safe samples, ≤ 1 Hz cache."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from sdpanel import sysmon
from sdpanel.sysmon import SystemMonitor, format_status


def _has_nvidia() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetCount() > 0
    except Exception:
        return False


def test_sample_is_json_safe_and_complete(tmp_path: Path) -> None:
    sample = SystemMonitor(tmp_path).sample()
    json.dumps(sample)
    assert set(sample) >= {"gpu", "cpu", "ram", "disk", "time"}
    assert 0 <= sample["cpu"]["percent"] <= 100
    assert 0 < sample["ram"]["used"] <= sample["ram"]["total"]
    assert sample["disk"]["path"] == str(tmp_path)
    assert 0 < sample["disk"]["free"] <= sample["disk"]["total"]


@pytest.mark.skipif(_has_nvidia(), reason="this machine has an NVIDIA GPU")
def test_no_gpu_state_is_clear(tmp_path: Path) -> None:
    gpu = SystemMonitor(tmp_path).sample()["gpu"]
    assert gpu["available"] is False
    assert gpu["reason"].startswith("no NVIDIA GPU found (pynvml: ")
    assert gpu["devices"] == []
    line = format_status(SystemMonitor(tmp_path).sample())
    assert line.startswith("no NVIDIA GPU found")
    assert "CPU" in line and "RAM" in line and "free of" in line


def test_disk_path_that_does_not_exist_yet_uses_its_parent(tmp_path: Path) -> None:
    sample = SystemMonitor(tmp_path / "not" / "yet").sample()
    assert sample["disk"]["total"] > 0


def test_cache_returns_same_sample_within_interval(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(sysmon.time, "monotonic", lambda: clock[0])
    mon = SystemMonitor(tmp_path)
    calls = []
    real = mon._gpu
    monkeypatch.setattr(mon, "_gpu", lambda: calls.append(1) or real())
    first = mon.sample()
    clock[0] += 0.5
    second = mon.sample()
    assert second == first and len(calls) == 1
    second["cpu"]["percent"] = -1  # a caller mutating its copy does not spoil the cache
    assert mon.sample()["cpu"] == first["cpu"]
    clock[0] += 0.6
    third = mon.sample()
    assert len(calls) == 2
    assert third["time"] >= first["time"]


def test_fake_gpu_is_reported_per_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class NVMLError(Exception):
        pass

    fake = types.ModuleType("pynvml")
    fake.NVMLError = NVMLError  # type: ignore[attr-defined]
    fake.NVML_TEMPERATURE_GPU = 0  # type: ignore[attr-defined]
    fake.nvmlInit = lambda: None  # type: ignore[attr-defined]
    fake.nvmlDeviceGetCount = lambda: 2  # type: ignore[attr-defined]
    fake.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    fake.nvmlDeviceGetName = lambda h: b"Tesla T4" if h == 0 else "NVIDIA L4"  # type: ignore[attr-defined]
    fake.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=37)  # type: ignore[attr-defined]
    fake.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=2 * 1024**3, total=16 * 1024**3)  # type: ignore[attr-defined]

    def temperature(h: int, _sensor: int) -> int:
        if h == 1:
            raise NVMLError("Not Supported")
        return 61

    fake.nvmlDeviceGetTemperature = temperature  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    sample = SystemMonitor(tmp_path).sample()
    gpu = sample["gpu"]
    assert gpu["available"] is True
    assert [d["name"] for d in gpu["devices"]] == ["Tesla T4", "NVIDIA L4"]
    assert gpu["devices"][0]["temperature"] == 61
    assert gpu["devices"][1]["temperature"] is None  # unsupported field, not a crash
    line = format_status(sample)
    assert "GPU0 Tesla T4 37% · VRAM 2.0/16.0 GiB · 61°C" in line
    assert "GPU1 NVIDIA L4 37% · VRAM 2.0/16.0 GiB |" in line


def test_gpu_init_failure_is_not_retried_every_sample(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    attempts = []
    fake = types.ModuleType("pynvml")

    def init() -> None:
        attempts.append(1)
        raise RuntimeError("driver not loaded")

    fake.nvmlInit = init  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    mon = SystemMonitor(tmp_path, min_interval=0)
    assert "driver not loaded" in mon.sample()["gpu"]["reason"]
    mon.sample()
    assert len(attempts) == 1
