"""What is going on right now: platform, system sample, storage, sdpanel processes.

One implementation shared by ``sdpanel status`` and ``GET /sdpanel/api/status`` so the CLI
and the sidebar never disagree. Everything here is blocking (psutil, NVML, disk): the
server calls it in a worker thread.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import psutil

# A pid record's start time may differ from psutil's create_time by clock rounding and the
# gap between spawn and the write of the record; beyond this the pid was reused.
_START_TOLERANCE_S = 5.0

# Never echo these from a pid record, even if a writer put them there by mistake: command
# lines and secrets may carry tokens.
_HIDDEN_FIELDS = {"cmd", "cmdline", "argv", "env", "secret", "token", "password"}


def _plain(value: Any) -> Any:
    """A JSON-safe copy of dataclasses / paths, recursively."""
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _platform() -> tuple[dict[str, Any], Path]:
    from sdpanel.platforms import detect_platform

    info = detect_platform()
    return _plain(info), Path(info.storage_root).expanduser().resolve()


_monitors: dict[Path, Any] = {}


def _system(root: Path) -> dict[str, Any]:
    from sdpanel.sysmon import SystemMonitor

    # One monitor per storage root and process: its 1 s cache then serves every caller
    # (the sidebar polls), and its disk reading is the storage's disk.
    monitor = _monitors.get(root)
    if monitor is None:
        monitor = _monitors[root] = SystemMonitor(disk_path=root)
    return _plain(monitor.sample())


def process_alive(pid: int, started: float | None) -> tuple[bool, str]:
    """(alive, why-not). A pid whose process started well after the record was written
    belongs to someone else now: report it stale rather than claim it is ours."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False, "exited (zombie)"
        created = proc.create_time()
    except psutil.NoSuchProcess:
        return False, "not running"
    except psutil.AccessDenied:
        return True, ""
    if started is not None and created > started + _START_TOLERANCE_S:
        return False, "pid reused by another process"
    return True, ""


def read_process_records(state_dir: Path) -> list[dict[str, Any]]:
    """Every ``<state_dir>/pids/*.json`` record with an ``alive`` flag. Broken or dead
    records are reported (``stale``), never raised: status must always answer."""
    from sdpanel.settings import redact

    records: list[dict[str, Any]] = []
    pid_dir = state_dir / "pids"
    if not pid_dir.is_dir():
        return records
    for path in sorted(pid_dir.glob("*.json")):
        entry: dict[str, Any] = {"name": path.stem, "record": path.name}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            pid = int(data["pid"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            entry.update(alive=False, stale=True, reason=f"unreadable record: {exc}")
            records.append(entry)
            continue
        # A URL field may carry a token in its query: mask what a record holds as text.
        entry.update({k: redact(v) if isinstance(v, str) else v for k, v in data.items()
                      if k.lower() not in _HIDDEN_FIELDS})
        entry["pid"] = pid
        started = data.get("started")
        alive, reason = process_alive(pid, float(started) if isinstance(started, (int, float)) else None)
        entry.update(alive=alive, stale=not alive)
        if reason:
            entry["reason"] = reason
        records.append(entry)
    return records


def _storage(root: Path) -> dict[str, Any]:
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    return {
        "root": str(root),
        "exists": root.is_dir(),
        "free_bytes": usage.free,
        "total_bytes": usage.total,
    }


def gather_status(storage_root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Platform, system sample, storage and sdpanel processes as one JSON-safe dict.

    ``storage_root`` defaults to the detected platform's store (``SDPANEL_STORAGE`` wins
    there). A part that fails is reported under ``errors`` instead of failing the whole.
    """
    import sdpanel

    errors: dict[str, str] = {}
    status: dict[str, Any] = {"version": sdpanel.__version__}
    root: Path | None = Path(storage_root).expanduser().resolve() if storage_root else None
    try:
        status["platform"], detected_root = _platform()
        root = root or detected_root
    except Exception as exc:  # a broken detector must not hide the rest of the status
        status["platform"] = None
        errors["platform"] = _message(exc)
    root = root or Path.cwd() / "storage"
    try:
        status["system"] = _system(root)
    except Exception as exc:
        status["system"] = None
        errors["system"] = _message(exc)
    status["storage"] = _storage(root)
    status["processes"] = read_process_records(root / ".sdpanel")
    status["errors"] = errors
    return status


def _message(exc: BaseException) -> str:
    from sdpanel.settings import redact

    return redact(f"{type(exc).__name__}: {exc}")


def format_status(status: dict[str, Any]) -> str:
    """A short human summary of :func:`gather_status` (for ``sdpanel status``)."""
    from sdpanel.storage import human_bytes

    lines = [f"sdpanel {status.get('version', '?')}"]
    plat = status.get("platform") or {}
    if plat:
        lines.append(f"platform  {plat.get('name', '?')} (reach: {plat.get('reach', '?')})")
    system = status.get("system") or {}
    if system:
        from sdpanel.sysmon import format_status as format_sample

        lines.append(f"system    {format_sample(system)}")
    st = status["storage"]
    lines.append(
        f"storage   {st['root']}  {human_bytes(st['free_bytes'])} free of "
        f"{human_bytes(st['total_bytes'])}" + ("" if st["exists"] else "  (not created yet)")
    )
    procs = status.get("processes") or []
    if not procs:
        lines.append("processes none recorded")
    for p in procs:
        state = "running" if p.get("alive") else f"stale ({p.get('reason', 'not running')})"
        port = f" port {p['port']}" if p.get("port") else ""
        lines.append(f"process   {p.get('name')}: pid {p.get('pid', '?')}{port} {state}")
    for part, err in (status.get("errors") or {}).items():
        lines.append(f"error     {part}: {err}")
    return "\n".join(lines)
