"""The Launch tab: pick a WebUI, a GPU, arguments and tunnels; install / start / stop /
restart it; watch its state, a live log tail and its links.

Flow: the browser sends intents (``launch.install`` …) with the form's values; each runs on
the runtime through the store's one :class:`~sdpanel.webuis.WebUIService`. The service
publishes ``webui:<id>`` events (state, progress, log lines, tunnel states); the
:class:`LaunchController` folds them into small runtime-owned traits written by a
:class:`~sdpanel.runtime.Publisher`:

- ``launch_status``: one compact dict per WebUI (state, port, pid, exit code, message, the
  crash's last lines, install progress, tunnels without their passwords, busy / error);
- ``launch_log``: the last ``LOG_LINES`` lines of the WebUI in the picker, as one string;
- ``launch_webuis``: the registry's WebUIs (id, label) and whether the Jupyter proxy exists.

The form itself (``launch_webui`` and the browser's own fields) is UI-owned. A tunnel's
password never enters a trait: it goes to the open views as a custom message and is kept
in memory only until a view says it showed it (``launch.secret_seen``); a view opened
later asks for what is still pending (``launch.hello``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import traitlets

from ._registry import register_tab

if TYPE_CHECKING:
    from sdpanel.runtime import Event
    from sdpanel.webuis import WebUIService

    from ._app import Panel

LOG_LINES = 200  # lines of the log tail sent to the browser
LINE_CHARS = 400  # a longer line is cut (progress bars without newlines)
LOG_CHARS = 24_000  # the whole tail's text, at most
CRASH_LINES = 20  # last lines kept with a crash
MESSAGE_CHARS = 1200
TOPIC = "webui"


def _redact(text: str) -> str:
    from sdpanel.settings import redact

    return redact(text)


def _line(text: str) -> str:
    text = _redact(text.rstrip("\r\n"))
    return text if len(text) <= LINE_CHARS else text[:LINE_CHARS] + "…"


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


class LaunchController:
    """Feeds one panel from the WebUI service's events. Event callbacks run on the
    publishing thread (the runtime loop); actions run on the kernel thread and only submit."""

    def __init__(self, panel: Any, service_factory: Callable[[], WebUIService] | None = None,
                 *, max_rate: float = 4.0) -> None:
        from sdpanel.runtime import Publisher, get_runtime

        self.panel = panel
        self.rt = get_runtime()
        self._factory = service_factory or _default_service
        self._svc: WebUIService | None = None
        self._lock = threading.Lock()
        self._status: dict[str, dict[str, Any]] = {}
        self._logs: dict[str, deque[str]] = {}
        self._secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.publisher = Publisher(panel, max_rate=max_rate)
        self._unsubscribe: Callable[[], None] | None = None
        self._observing = False

    # ---- life cycle ------------------------------------------------------------------
    @property
    def service(self) -> WebUIService:
        if self._svc is None:
            self._svc = self._factory()
        return self._svc

    def attach(self) -> None:
        from sdpanel.webuis import tunnel_table, webui_info, webuis

        listed = []
        for wid in webuis():
            with contextlib.suppress(Exception):  # a broken registry entry must not hide the tab
                listed.append({"id": wid, "label": webui_info(wid).label})
        self.panel.launch_webuis = {
            "webuis": listed,
            "tunnels": list(tunnel_table()),
            "proxy": importlib.util.find_spec("jupyter_server_proxy") is not None,
            "defaults": _form_defaults(),
        }
        if not self.panel.launch_webui:
            self.panel.launch_webui = _settings_webui(listed)
        self._unsubscribe = self.rt.bus.subscribe(self._on_event, topics={TOPIC})
        with contextlib.suppress(Exception):
            self.panel.observe(self._on_select, names=["launch_webui"])
            self._observing = True
        self.reload()

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._observing:
            with contextlib.suppress(Exception):
                self.panel.unobserve(self._on_select, names=["launch_webui"])
            self._observing = False
        self.publisher.close()

    def reload(self) -> None:
        """Read what is installed and running (re-attaching to a previous kernel's WebUI)."""
        try:
            svc = self.service
        except Exception as exc:  # noqa: BLE001 - e.g. an unwritable store: say why, offer retry
            self._set_all_error(_redact(f"The WebUI service could not start: {exc}"))
            return

        async def seed() -> None:
            from sdpanel.webuis import installed_info

            for rec in (self.panel.launch_webuis or {}).get("webuis", []):
                wid = rec["id"]
                installed = installed_info(svc.webui_dir(wid)) is not None
                proc = svc.manager.procs.get(wid)
                with self._lock:
                    st = self._entry(wid)
                    st["installed"] = installed
                    if proc is not None and proc.state not in ("stopped",):
                        st.update(_proc_fields(proc.info()))
                        st["state"] = proc.state
                    elif st["state"] in ("not_installed", "installed"):
                        st["state"] = "installed" if installed else "not_installed"
            await svc.attach_all()  # ready events arrive for what still runs
            running = {str(r["name"]): r for r in svc.ps() if r.get("alive")}
            with self._lock:
                for wid, st in self._status.items():
                    proc = svc.manager.procs.get(wid)
                    if proc is not None and st["state"] == "ready" and not self._logs.get(wid):
                        self._logs[wid] = deque((_line(x) for x in proc.tail(LOG_LINES)), maxlen=LOG_LINES)
                    # Tunnels another kernel (or the CLI) opened: their URLs, not their passwords.
                    for t in running.get(wid, {}).get("tunnels") or []:
                        if isinstance(t, dict) and t.get("tool") and t.get("url") and t.get("alive", True):
                            self._on_tunnel(st, str(t["tool"]), str(t.get("state") or "ready"), t)
            self._push()

        self.rt.submit(seed(), name="launch-panel-load", topic=f"{TOPIC}:panel")

    # ---- state -------------------------------------------------------------------------
    def _entry(self, wid: str) -> dict[str, Any]:
        st = self._status.get(wid)
        if st is None:
            st = self._status[wid] = {
                "state": "not_installed", "installed": False, "port": None, "pid": None,
                "url": None, "exit_code": None, "message": "", "tail": [], "progress": None,
                "tunnels": [], "busy": "", "error": "", "retry": "", "restarting": False,
            }
        return st

    def _set_all_error(self, message: str) -> None:
        with self._lock:
            for rec in (self.panel.launch_webuis or {}).get("webuis", []):
                self._entry(rec["id"]).update(error=message, retry="launch.reload")
        self._push()

    def snapshot(self) -> tuple[dict[str, Any], dict[str, Any]]:
        with self._lock:
            status = {w: {**s, "tail": list(s["tail"]), "tunnels": [dict(t) for t in s["tunnels"]]}
                      for w, s in self._status.items()}
            wid = str(getattr(self.panel, "launch_webui", "") or "")
            lines = list(self._logs.get(wid, ()))
        # Saved notebooks keep traits: at most LOG_CHARS of the newest lines.
        size, keep = 0, 0
        for line in reversed(lines):
            size += len(line) + 1
            if size > LOG_CHARS:
                break
            keep += 1
        lines = lines[len(lines) - keep:]
        return status, {"webui": wid, "text": "\n".join(lines), "lines": len(lines)}

    def _push(self) -> None:
        status, log = self.snapshot()
        self.publisher.update(launch_status=status, launch_log=log)

    def _on_select(self, _change: Any) -> None:
        self._push()

    # ---- events (publishing thread) -----------------------------------------------------
    def _on_event(self, event: Event) -> None:
        from sdpanel.runtime import LogEvent, ProgressEvent, StateEvent

        wid = event.topic.split(":", 1)[1] if ":" in event.topic else ""
        if not wid or wid == "panel":
            return
        with self._lock:
            st = self._entry(wid)
            if isinstance(event, LogEvent):
                log = self._logs.setdefault(wid, deque(maxlen=LOG_LINES))
                prefix = "" if event.key == wid else f"[{event.key}] "
                log.append(_line(prefix + event.message))
            elif isinstance(event, ProgressEvent) and event.key == "install":
                st["progress"] = {"done": int(event.done or 0), "total": event.total,
                                  "message": _redact(event.message or "")[:120]}
            elif isinstance(event, StateEvent) and event.key.startswith("tunnel:"):
                self._on_tunnel(st, event.key.split(":", 1)[1], event.state, dict(event.data or {}))
            elif isinstance(event, StateEvent) and event.key == wid:
                self._on_state(wid, st, event.state, dict(event.data or {}))
            else:
                return
        self._push()

    def _on_state(self, wid: str, st: dict[str, Any], state: str, data: dict[str, Any]) -> None:
        st["state"] = state
        if state == "installing":
            st.update(progress={"done": 0, "total": None, "message": "starting"}, error="", retry="")
            self._logs[wid] = deque(maxlen=LOG_LINES)
        elif state == "installed":
            st.update(installed=True, progress=None)
        elif state == "failed":
            st.update(progress=None, message=_redact(str(data.get("error") or ""))[:MESSAGE_CHARS])
            st["state"] = "installed" if st["installed"] else "not_installed"
            st["error"] = _redact(f"Install failed: {data.get('error') or 'see the log'}")[:MESSAGE_CHARS]
            st["retry"] = "launch.install"
        elif state == "starting":
            st.update(_proc_fields(data), tail=[], message="", exit_code=None, error="", retry="",
                      restarting=False)
            self._logs[wid] = deque(maxlen=LOG_LINES)
        elif state == "ready":
            st.update(_proc_fields(data), message="", restarting=False)
        elif state == "crashed":
            st.update(exit_code=data.get("exit_code"), restarting=bool(data.get("restarting")),
                      tail=[_line(x) for x in list(data.get("tail") or [])[-CRASH_LINES:]],
                      message=_redact(str(data.get("message") or ""))[:MESSAGE_CHARS])
        elif state == "stopped":
            st.update(exit_code=data.get("exit_code"), message="", restarting=False)
            for t in st["tunnels"]:
                t["state"] = "stopped"

    def _on_tunnel(self, st: dict[str, Any], tool: str, state: str, data: dict[str, Any]) -> None:
        row = next((t for t in st["tunnels"] if t["tool"] == tool), None)
        if row is None:
            row = {"tool": tool, "url": None, "user": None, "auth": None, "state": state, "secret": False}
            st["tunnels"].append(row)
        row["state"] = state
        for key in ("url", "user", "auth"):
            if data.get(key):
                row[key] = str(data[key])

    def _log(self, wid: str, lines: list[str]) -> None:
        """Lines of our own in the tail (an install's summary: a package install is quiet)."""
        with self._lock:
            log = self._logs.setdefault(wid, deque(maxlen=LOG_LINES))
            log.extend(_line(x) for x in lines)
        self._push()

    # ---- actions (kernel thread) ---------------------------------------------------------
    def _run(self, wid: str, busy: str, make: Callable[[WebUIService], Coroutine[Any, Any, None]],
             retry: str) -> None:
        with self._lock:
            st = self._entry(wid)
            if st["busy"]:
                raise RuntimeError(f"{wid} is busy ({st['busy']}); wait until it is done")
            st.update(busy=busy, error="", retry="")
        self._push()
        svc = self.service

        async def job() -> None:
            error = ""
            try:
                await make(svc)
            except Exception as exc:  # noqa: BLE001 - the panel shows why, with a retry
                error = _redact(_error_text(busy, exc))
            with self._lock:
                st = self._entry(wid)
                st["busy"] = ""
                if error:
                    st.update(error=error[:MESSAGE_CHARS], retry=retry)
            self._push()

        self.rt.submit(job(), name=f"launch-{busy}-{wid}", topic=f"{TOPIC}:panel")

    def install(self, payload: dict[str, Any], *, then_start: bool = False) -> None:
        form = parse_form(payload)
        wid = form["webui"]

        async def make(svc: WebUIService) -> None:
            from sdpanel.storage import human_bytes

            res = await svc.install(wid, source=form["source"], replace=bool(payload.get("replace")),
                                    extensions=bool(payload.get("extensions", True)))
            size = f", {res.files} files, {human_bytes(res.bytes)}" if res.files else ""
            self._log(wid, [f"[install] installed from {res.source} ({res.method}{size}, "
                            f"{res.seconds:.1f}s) into {res.path}", *(f"[install] {n}" for n in res.notes)])
            with self._lock:
                self._entry(wid)["installed"] = True
            if then_start:
                await self._launch(svc, form)

        self._run(wid, "installing", make, "launch.install")

    def start(self, payload: dict[str, Any], *, install_missing: bool = False) -> None:
        from sdpanel.webuis import installed_info

        form = parse_form(payload)
        wid = form["webui"]
        if installed_info(self.service.webui_dir(wid)) is None:
            if install_missing:
                self.install(payload, then_start=True)
                return
            raise ValueError(f"{wid} is not installed yet: press Install first")
        self._run(wid, "starting", lambda svc: self._launch(svc, form), "launch.start")

    async def _launch(self, svc: WebUIService, form: dict[str, Any]) -> None:
        wid = form["webui"]
        settings = _settings()
        res = await svc.launch(wid, gpu=form["gpu"], cpu=True if form["gpu"] is None else None,
                               port=getattr(settings, "webui_port", 0) or None, args=form["args"],
                               tunnels=form["tunnels"], wait=True)
        with self._lock:
            st = self._entry(wid)
            for t in res.tunnels:
                self._on_tunnel(st, t["tool"], str(t.get("state") or "ready"), t)
                if t.get("password"):
                    row = next(r for r in st["tunnels"] if r["tool"] == t["tool"])
                    row["secret"] = True
                    self._secrets[(wid, t["tool"])] = {"webui": wid, "tool": t["tool"],
                                                      "user": str(t.get("user") or ""),
                                                      "password": str(t["password"])}
            if res.errors:
                st["error"] = _redact("; ".join(res.errors))[:MESSAGE_CHARS]
        self._send_secrets()

    def stop(self, payload: dict[str, Any]) -> None:
        wid = parse_form({"webui": payload.get("webui")})["webui"]

        async def make(svc: WebUIService) -> None:
            await svc.stop(wid)
            with self._lock:
                self._secrets = {k: v for k, v in self._secrets.items() if k[0] != wid}
                self._entry(wid)["tunnels"] = []

        self._run(wid, "stopping", make, "launch.stop")

    def restart(self, payload: dict[str, Any]) -> None:
        form = parse_form(payload)
        wid = form["webui"]
        proc = self.service.manager.procs.get(wid)
        if proc is None or proc.spec is None:  # started elsewhere: stop, then launch again
            async def make(svc: WebUIService) -> None:
                await svc.stop(wid)
                await self._launch(svc, form)
        else:
            async def make(svc: WebUIService) -> None:
                await svc.restart(wid)

        self._run(wid, "restarting", make, "launch.restart")

    # ---- secrets: shown once --------------------------------------------------------------
    def _send_secrets(self) -> None:
        with self._lock:
            pending = list(self._secrets.values())
        for secret in pending:
            # No comm (a closed panel): it stays pending until a view says hello.
            with contextlib.suppress(Exception):
                self.panel.send({"type": "launch-secret", **secret})

    def secret_seen(self, payload: dict[str, Any]) -> None:
        with self._lock:
            self._secrets.pop((str(payload.get("webui")), str(payload.get("tool"))), None)

    def hello(self) -> None:
        self._send_secrets()

    def dismiss(self, payload: dict[str, Any]) -> None:
        with self._lock:
            self._entry(str(payload.get("webui") or "")).update(error="", retry="")
        self._push()


def _proc_fields(data: dict[str, Any]) -> dict[str, Any]:
    return {k: data.get(k) for k in ("port", "pid", "url", "exit_code") if k in data}


def _one_line(exc: BaseException) -> str:
    """The first line of an error (crash messages carry the log lines below it; those show
    in the crash box already)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].split(" Last log lines:")[0]


def _error_text(busy: str, exc: BaseException) -> str:
    """What the error box says: what failed, why, and what to do."""
    from sdpanel.webuis import WebUICrashed

    what = {"installing": "Install", "starting": "Start", "stopping": "Stop",
            "restarting": "Restart"}.get(busy, busy.capitalize())
    if isinstance(exc, WebUICrashed):
        code = "an unknown code" if exc.exit_code is None else f"code {exc.exit_code}"
        tries = " again and again" if exc.loop else ""
        return (f"{what} failed: it exited with {code}{tries} while starting. Fix the cause shown "
                f"in its last lines below (arguments, missing packages, GPU), then Retry.")
    return f"{what} failed: {_one_line(exc)}"


def _settings() -> Any:
    from ._settings_tab import resolved_settings

    return resolved_settings()


def _form_defaults() -> dict[str, Any]:
    """The form's starting values from the settings (the browser owns them afterwards)."""
    try:
        s = _settings()
    except Exception:  # noqa: BLE001 - a broken settings file: empty form
        return {"gpu": 0, "args": "", "tunnels": []}
    tunnel = str(s.tunnel)
    return {"gpu": int(s.gpu_index), "args": str(s.launch_args),
            "tunnels": [] if tunnel in ("", "none") else [tunnel]}


def _settings_webui(listed: list[dict[str, Any]]) -> str:
    ids = [w["id"] for w in listed]
    try:
        wid = str(_settings().webui)
    except Exception:  # noqa: BLE001 - a broken settings file: first WebUI
        wid = ""
    return wid if wid in ids else (ids[0] if ids else "")


def _default_service() -> WebUIService:
    from sdpanel.webuis import webui_service

    from ._services import storage_root

    return webui_service(storage_root())


# ---- registry glue -------------------------------------------------------------------------

def controller(panel: Panel) -> LaunchController:
    ctl: LaunchController | None = getattr(panel, "_sdp_launch", None)
    if ctl is None:
        raise RuntimeError("The Launch tab is not attached to this panel")
    return ctl


def _attach(panel: Panel) -> Callable[[], None]:
    ctl = LaunchController(panel)
    panel._sdp_launch = ctl  # type: ignore[attr-defined]
    ctl.attach()
    return ctl.detach


register_tab(
    "launch",
    "Launch",
    traits={
        "launch_webuis": traitlets.Dict(),
        "launch_status": traitlets.Dict(),
        "launch_log": traitlets.Dict(),
        "launch_webui": traitlets.Unicode(""),
    },
    actions={
        "launch.install": lambda p, m: controller(p).install(m),
        "launch.start": lambda p, m: controller(p).start(m),
        "launch.stop": lambda p, m: controller(p).stop(m),
        "launch.restart": lambda p, m: controller(p).restart(m),
        "launch.reload": lambda p, _m: controller(p).reload(),
        "launch.hello": lambda p, _m: controller(p).hello(),
        "launch.secret_seen": lambda p, m: controller(p).secret_seen(m),
        "launch.dismiss": lambda p, m: controller(p).dismiss(m),
    },
    attach=_attach,
    order=40,  # after Downloads (30): models in, then launch the WebUI
)
