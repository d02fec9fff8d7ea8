"""System monitor: GPU (pynvml), CPU, RAM and disk (psutil), sampled at most once a second.

Panels poll it, the sidebar status endpoint asks it, headless cells print it; the cache
makes all of them share one sample per second however many ask.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from sdpanel.storage import human_bytes


class SystemMonitor:
    """``sample()`` returns a JSON-safe dict; calls within ``min_interval`` seconds of the
    last sample get that same sample back."""

    def __init__(self, disk_path: str | os.PathLike[str] | None = None,
                 min_interval: float = 1.0) -> None:
        self.disk_path = Path(disk_path) if disk_path else Path.home()
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._last: dict[str, Any] | None = None
        self._last_at = 0.0
        self._nvml_ready = False
        self._nvml_error: str | None = None
        psutil.cpu_percent(interval=None)  # prime: the first reading is always 0.0

    # ---- GPU --------------------------------------------------------------------------

    def _init_nvml(self) -> bool:
        if self._nvml_ready:
            return True
        if self._nvml_error is not None:
            return False  # NVML does not appear later in a process; don't retry every second
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception as exc:  # noqa: BLE001 - no driver, no library, no device
            self._nvml_error = f"{type(exc).__name__}: {exc}".strip(": ")
            return False
        self._nvml_ready = True
        return True

    def _gpu(self) -> dict[str, Any]:
        if not self._init_nvml():
            return {"available": False, "reason": f"no NVIDIA GPU found (pynvml: {self._nvml_error})",
                    "devices": []}
        import pynvml

        def read(fn: Any, *args: Any) -> Any:
            try:
                return fn(*args)
            except pynvml.NVMLError:  # a field this GPU or driver does not report
                return None

        try:
            count = pynvml.nvmlDeviceGetCount()
        except pynvml.NVMLError as exc:
            return {"available": False, "reason": f"no NVIDIA GPU found (pynvml: {exc})",
                    "devices": []}
        if count == 0:
            return {"available": False, "reason": "no NVIDIA GPU found (pynvml: 0 devices)",
                    "devices": []}
        devices = []
        for index in range(count):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = read(pynvml.nvmlDeviceGetName, handle)
            util = read(pynvml.nvmlDeviceGetUtilizationRates, handle)
            mem = read(pynvml.nvmlDeviceGetMemoryInfo, handle)
            temp = read(pynvml.nvmlDeviceGetTemperature, handle, pynvml.NVML_TEMPERATURE_GPU)
            devices.append({
                "index": index,
                "name": name.decode() if isinstance(name, bytes) else name,
                "utilization": int(util.gpu) if util is not None else None,
                "vram_used": int(mem.used) if mem is not None else None,
                "vram_total": int(mem.total) if mem is not None else None,
                "temperature": int(temp) if temp is not None else None,
            })
        return {"available": True, "reason": "", "devices": devices}

    # ---- sampling ---------------------------------------------------------------------

    def _disk(self) -> dict[str, Any]:
        path = self.disk_path.expanduser()
        while not path.exists() and path != path.parent:
            path = path.parent
        usage = psutil.disk_usage(str(path))
        return {"path": str(self.disk_path), "total": usage.total, "used": usage.used,
                "free": usage.free, "percent": usage.percent}

    def sample(self) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            if self._last is not None and now - self._last_at < self.min_interval:
                return copy.deepcopy(self._last)  # callers may mutate their copy
            mem = psutil.virtual_memory()
            sample = {
                "time": time.time(),
                "gpu": self._gpu(),
                "cpu": {"percent": psutil.cpu_percent(interval=None),
                        "count": psutil.cpu_count() or 1},
                "ram": {"total": mem.total, "used": mem.total - mem.available,
                        "percent": mem.percent},
                "disk": self._disk(),
            }
            self._last, self._last_at = sample, now
            return copy.deepcopy(sample)


def format_status(sample: dict[str, Any]) -> str:
    """One line: ``GPU0 Tesla T4 37% · VRAM 3.2/15.0 GiB · 61°C | CPU 12% | RAM ... | Disk ...``."""
    parts: list[str] = []
    gpu = sample.get("gpu", {})
    if gpu.get("available"):
        for dev in gpu.get("devices", []):
            bits = [f"GPU{dev['index']} {dev.get('name') or '?'}"]
            if dev.get("utilization") is not None:
                bits[0] += f" {dev['utilization']}%"
            if dev.get("vram_total"):
                bits.append(f"VRAM {dev['vram_used'] / 1024**3:.1f}/{dev['vram_total'] / 1024**3:.1f} GiB")
            if dev.get("temperature") is not None:
                bits.append(f"{dev['temperature']}°C")
            parts.append(" · ".join(bits))
    else:
        parts.append(gpu.get("reason") or "no NVIDIA GPU found")
    cpu, ram, disk = sample.get("cpu", {}), sample.get("ram", {}), sample.get("disk", {})
    if cpu:
        parts.append(f"CPU {cpu['percent']:.0f}%")
    if ram:
        parts.append(f"RAM {human_bytes(ram['used'])}/{human_bytes(ram['total'])}")
    if disk:
        parts.append(f"Disk {human_bytes(disk['free'])} free of {human_bytes(disk['total'])}")
    return " | ".join(parts)
