"""The Launch tab's form and error box: the browser's values → ``WebUIService.launch``
keywords, the form's defaults from the settings, and what a failed action says."""

from __future__ import annotations

from typing import Any

__all__ = ["error_text", "form_defaults", "parse_form", "settings", "settings_webui"]


def parse_form(payload: dict[str, Any]) -> dict[str, Any]:
    """The browser's form → keywords for ``WebUIService.launch``. Bad values raise
    ValueError naming the field and the fix."""
    from sdpanel.webuis import tunnel_table, webui_info

    webui = webui_info(str(payload.get("webui") or "")).id  # unknown: ValueError listing the choices
    gpu_raw = payload.get("gpu")
    gpu: int | None
    if gpu_raw in (None, "", "cpu"):
        gpu = None
    else:
        try:
            gpu = int(str(gpu_raw))
        except ValueError:
            raise ValueError(f"GPU: {gpu_raw!r} is not a GPU number; pick one from the list") from None
        if gpu < 0:
            raise ValueError(f"GPU must be 0 or more (got {gpu})")
    args = str(payload.get("args") or "").strip()
    if args:
        import shlex

        try:
            shlex.split(args)
        except ValueError as exc:
            raise ValueError(f"Arguments: {exc} (close the quote)") from None
    tools = [str(t) for t in payload.get("tunnels") or [] if t and t != "none"]
    known = tunnel_table()
    bad = [t for t in tools if t not in known]
    if bad:
        raise ValueError(f"Unknown tunnel(s) {', '.join(bad)}; known: {', '.join(known)}")
    source = str(payload.get("source") or "").strip() or None
    return {"webui": webui, "gpu": gpu, "args": args, "tunnels": tools, "source": source}


ERROR_LINES = 8  # last output lines shown under an error


def _one_line(exc: BaseException) -> str:
    """The first line of an error (crash messages carry the log lines below it; those show
    in the crash box already)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].split(" Last log lines:")[0]


def error_text(busy: str, exc: BaseException) -> str:
    """What the error box says: what failed, why, and what to do."""
    from sdpanel.webuis import WebUICrashed

    what = {"installing": "Install", "starting": "Start", "stopping": "Stop",
            "restarting": "Restart", "updating": "Update", "switching": "Switch"}.get(busy, busy.capitalize())
    if isinstance(exc, WebUICrashed):
        code = "an unknown code" if exc.exit_code is None else f"code {exc.exit_code}"
        tries = " again and again" if exc.loop else ""
        return (f"{what} failed: it exited with {code}{tries} while starting. Fix the cause shown "
                f"in its last lines below (arguments, missing packages, GPU), then Retry.")
    # The sentence of cause and fix first; the command's last lines (a StepError carries
    # them below its first line) follow, so the cause is readable without opening the log.
    detail = [ln.removeprefix("  | ") for ln in str(exc).splitlines()[1:]
              if ln.strip() and ln.strip() != "Last output:"]
    return "\n".join([f"{what} failed: {_one_line(exc)}", *detail[-ERROR_LINES:]])


def settings() -> Any:
    from ._settings_tab import resolved_settings

    return resolved_settings()


def form_defaults() -> dict[str, Any]:
    """The form's starting values from the settings (the browser owns them afterwards)."""
    try:
        s = settings()
    except Exception:  # noqa: BLE001 - a broken settings file: empty form
        return {"gpu": 0, "args": "", "tunnels": []}
    tunnel = str(s.tunnel)
    return {"gpu": int(s.gpu_index), "args": str(s.launch_args),
            "tunnels": [] if tunnel in ("", "none") else [tunnel]}


def settings_webui(listed: list[dict[str, Any]]) -> str:
    """The WebUI the picker starts on: the settings' one if listed, else the first."""
    ids = [w["id"] for w in listed]
    try:
        wid = str(settings().webui)
    except Exception:  # noqa: BLE001 - a broken settings file: first WebUI
        wid = ""
    return wid if wid in ids else (ids[0] if ids else "")
