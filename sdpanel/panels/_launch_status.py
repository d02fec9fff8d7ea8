"""What the Launch tab shows for one WebUI: the ``launch_status`` row, folded from the
WebUI service's events, and the log tail's text. Plain functions on plain dicts; the
controller (:mod:`._launch_tab`) holds the lock around them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["CRASH_LINES", "LINE_CHARS", "LOG_CHARS", "LOG_LINES", "MESSAGE_CHARS", "apply_state",
           "apply_tunnel", "log_line", "new_status", "proc_fields", "redact", "tail_text"]

LOG_LINES = 200  # lines of the log tail sent to the browser
LINE_CHARS = 400  # a longer line is cut (progress bars without newlines)
LOG_CHARS = 24_000  # the whole tail's text, at most
CRASH_LINES = 20  # last lines kept with a crash
MESSAGE_CHARS = 1200


def redact(text: str) -> str:
    from sdpanel.settings import redact as settings_redact

    return settings_redact(text)


def log_line(text: str) -> str:
    """One line of the tail: no secrets, no endless progress bars."""
    text = redact(text.rstrip("\r\n"))
    return text if len(text) <= LINE_CHARS else text[:LINE_CHARS] + "…"


def new_status() -> dict[str, Any]:
    return {
        "state": "not_installed", "installed": False, "port": None, "pid": None,
        "url": None, "exit_code": None, "message": "", "tail": [], "progress": None,
        "tunnels": [], "busy": "", "error": "", "retry": "", "restarting": False,
        "version": "",
    }


def version_text(marker: dict[str, Any] | None) -> str:
    """What is installed, from the install marker: commit (and the ref it follows), or the
    package's version, and the venv archive it runs on."""
    if not marker:
        return ""
    version = str(marker.get("version") or "")
    text = version[:12] if len(version) == 40 else version
    if marker.get("ref") and marker.get("ref") != version:
        text += f" ({marker['ref']})"
    if marker.get("venv_archive"):
        text += f" · venv {marker['venv_archive']}"
    return text


def proc_fields(data: dict[str, Any]) -> dict[str, Any]:
    return {k: data.get(k) for k in ("port", "pid", "url", "exit_code") if k in data}


def apply_state(st: dict[str, Any], state: str, data: dict[str, Any]) -> bool:
    """Fold a WebUI state event into its row. True when the log tail starts afresh
    (a new install or a new start)."""
    st["state"] = state
    if state == "installing":
        st.update(progress={"done": 0, "total": None, "message": "starting"}, error="", retry="")
        return True
    if state == "installed":
        st.update(installed=True, progress=None)
    elif state == "failed":
        st.update(progress=None, message=redact(str(data.get("error") or ""))[:MESSAGE_CHARS])
        st["state"] = "installed" if st["installed"] else "not_installed"
        st["error"] = redact(f"Install failed: {data.get('error') or 'see the log'}")[:MESSAGE_CHARS]
        st["retry"] = "launch.install"
    elif state == "starting":
        st.update(proc_fields(data), tail=[], message="", exit_code=None, error="", retry="",
                  restarting=False)
        return True
    elif state == "ready":
        st.update(proc_fields(data), message="", restarting=False)
    elif state == "crashed":
        st.update(exit_code=data.get("exit_code"), restarting=bool(data.get("restarting")),
                  tail=[log_line(x) for x in list(data.get("tail") or [])[-CRASH_LINES:]],
                  message=redact(str(data.get("message") or ""))[:MESSAGE_CHARS])
    elif state == "stopped":
        st.update(exit_code=data.get("exit_code"), message="", restarting=False)
        for t in st["tunnels"]:
            t["state"] = "stopped"
    return False


def apply_tunnel(st: dict[str, Any], tool: str, state: str, data: dict[str, Any]) -> None:
    """Fold a tunnel's state into the row: its URL and user, never its password."""
    row = next((t for t in st["tunnels"] if t["tool"] == tool), None)
    if row is None:
        row = {"tool": tool, "url": None, "user": None, "auth": None, "state": state, "secret": False}
        st["tunnels"].append(row)
    row["state"] = state
    for key in ("url", "user", "auth"):
        if data.get(key):
            row[key] = str(data[key])


def tail_text(lines: Iterable[str]) -> list[str]:
    """The newest lines that fit in LOG_CHARS (saved notebooks keep traits)."""
    kept = list(lines)
    size, keep = 0, 0
    for line in reversed(kept):
        size += len(line) + 1
        if size > LOG_CHARS:
            break
        keep += 1
    return kept[len(kept) - keep:]
