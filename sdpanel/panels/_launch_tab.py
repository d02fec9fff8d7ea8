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

Split: :mod:`._launch_form` (form values, defaults, error texts), :mod:`._launch_status`
(folding events into a status row, the log tail), :mod:`._launch_secrets` (passwords shown
once); this module is the controller and the tab's registration.
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import traitlets

from ._controller import BusController, PanelSlot
from ._launch_form import error_text, form_defaults, parse_form, settings, settings_webui
from ._launch_secrets import TunnelSecrets
from ._launch_status import (
    LOG_LINES,
    MESSAGE_CHARS,
    apply_state,
    apply_tunnel,
    log_line,
    new_status,
    proc_fields,
    redact,
    tail_text,
    version_text,
)
from ._registry import register_tab

if TYPE_CHECKING:
    from sdpanel.runtime import Event
    from sdpanel.webuis import WebUIService


__all__ = ["LOG_LINES", "TOPIC", "LaunchController", "controller", "parse_form"]

TOPIC = "webui"


class LaunchController(BusController):
    """Feeds one panel from the WebUI service's events. Event callbacks run on the
    publishing thread (the runtime loop); actions run on the kernel thread and only submit."""

    def __init__(self, panel: Any, service_factory: Callable[[], WebUIService] | None = None,
                 *, max_rate: float = 4.0) -> None:
        from sdpanel.runtime import Publisher

        super().__init__(panel, Publisher(panel, max_rate=max_rate))
        self._factory = service_factory or _default_service
        self._svc: WebUIService | None = None
        self._lock = threading.Lock()
        self._status: dict[str, dict[str, Any]] = {}
        self._logs: dict[str, deque[str]] = {}
        self._secrets = TunnelSecrets()
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
            "defaults": form_defaults(),
        }
        if not self.panel.launch_webui:
            self.panel.launch_webui = settings_webui(listed)
        self.subscribe({TOPIC})
        with contextlib.suppress(Exception):
            self.panel.observe(self._on_select, names=["launch_webui"])
            # The `webui` setting is the one source of truth: a change saved in the
            # Settings tab (or by this tab's picker) moves the picker in every view.
            self.panel.observe(self._on_settings, names=["settings"])
            self._observing = True
        self.reload()

    def detach(self) -> None:
        if self._observing:
            with contextlib.suppress(Exception):
                self.panel.unobserve(self._on_select, names=["launch_webui"])
                self.panel.unobserve(self._on_settings, names=["settings"])
            self._observing = False
        super().detach()

    def reload(self) -> None:
        """Read what is installed and running (re-attaching to a previous kernel's WebUI)."""
        try:
            svc = self.service
        except Exception as exc:  # noqa: BLE001 - e.g. an unwritable store: say why, offer retry
            self._set_all_error(redact(f"The WebUI service could not start: {exc}"))
            return

        async def seed() -> None:
            from sdpanel.webuis import installed_info

            for rec in (self.panel.launch_webuis or {}).get("webuis", []):
                wid = rec["id"]
                marker = installed_info(svc.webui_dir(wid))
                installed = marker is not None
                proc = svc.manager.procs.get(wid)
                with self._lock:
                    st = self._entry(wid)
                    st["installed"] = installed
                    st["version"] = version_text(marker)
                    if proc is not None and proc.state not in ("stopped",):
                        st.update(proc_fields(proc.info()))
                        st["state"] = proc.state
                    elif st["state"] in ("not_installed", "installed"):
                        st["state"] = "installed" if installed else "not_installed"
            await svc.attach_all()  # ready events arrive for what still runs
            running = {str(r["name"]): r for r in svc.ps() if r.get("alive")}
            with self._lock:
                for wid, st in self._status.items():
                    proc = svc.manager.procs.get(wid)
                    if proc is not None and st["state"] == "ready" and not self._logs.get(wid):
                        self._logs[wid] = deque((log_line(x) for x in proc.tail(LOG_LINES)), maxlen=LOG_LINES)
                    # Tunnels another kernel (or the CLI) opened: their URLs, not their passwords.
                    for t in running.get(wid, {}).get("tunnels") or []:
                        if isinstance(t, dict) and t.get("tool") and t.get("url") and t.get("alive", True):
                            apply_tunnel(st, str(t["tool"]), str(t.get("state") or "ready"), t)
            self._push()

        self.rt.submit(seed(), name="launch-panel-load", topic=f"{TOPIC}:panel")

    # ---- state -------------------------------------------------------------------------
    def _entry(self, wid: str) -> dict[str, Any]:
        st = self._status.get(wid)
        if st is None:
            st = self._status[wid] = new_status()
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
        lines = tail_text(lines)  # saved notebooks keep traits: the newest that fit
        return status, {"webui": wid, "text": "\n".join(lines), "lines": len(lines)}

    def _push(self) -> None:
        status, log = self.snapshot()
        self.publisher.update(launch_status=status, launch_log=log)

    def _on_select(self, _change: Any) -> None:
        self._push()

    def _on_settings(self, change: Any) -> None:
        wid = str((change.get("new") or {}).get("webui") or "")
        listed = {w["id"] for w in (self.panel.launch_webuis or {}).get("webuis", [])}
        if wid in listed and wid != self.panel.launch_webui:
            self.panel.launch_webui = wid

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
                log.append(log_line(prefix + event.message))
            elif isinstance(event, ProgressEvent) and event.key == "install":
                st["progress"] = {"done": int(event.done or 0), "total": event.total,
                                  "message": redact(event.message or "")[:120]}
            elif isinstance(event, StateEvent) and event.key.startswith("tunnel:"):
                apply_tunnel(st, event.key.split(":", 1)[1], event.state, dict(event.data or {}))
            elif isinstance(event, StateEvent) and event.key == wid:
                if apply_state(st, event.state, dict(event.data or {})):
                    self._logs[wid] = deque(maxlen=LOG_LINES)
            else:
                return
        self._push()

    def _log(self, wid: str, lines: list[str]) -> None:
        """Lines of our own in the tail (an install's summary: a package install is quiet)."""
        with self._lock:
            log = self._logs.setdefault(wid, deque(maxlen=LOG_LINES))
            log.extend(log_line(x) for x in lines)
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
                error = redact(error_text(busy, exc))
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
            from sdpanel.webuis import installed_info

            res = await svc.install(wid, source=form["source"], replace=bool(payload.get("replace")),
                                    extensions=bool(payload.get("extensions", True)))
            size = f", {res.files} files, {human_bytes(res.bytes)}" if res.files else ""
            self._log(wid, [f"[install] installed from {res.source} ({res.method}{size}, "
                            f"{res.seconds:.1f}s) into {res.path}", *(f"[install] {n}" for n in res.notes)])
            with self._lock:
                self._entry(wid).update(installed=True, version=version_text(installed_info(res.path)))
            if then_start:
                await self._launch(svc, form)

        self._run(wid, "installing", make, "launch.install")

    def update(self, payload: dict[str, Any], *, switch: bool = False) -> None:
        """Update (no ``ref``) or switch to ``ref``: one log line per checkout moved; the
        WebUI's own refusal is the error shown, with its one-sentence fix."""
        wid = parse_form({"webui": payload.get("webui")})["webui"]
        ref = str(payload.get("ref") or "").strip() or None if switch else None
        if switch and ref is None:
            raise ValueError("Type the tag, branch or commit to switch to")

        async def make(svc: WebUIService) -> None:
            from sdpanel.webuis import installed_info

            results = await svc.update(wid, ref=ref, extensions=bool(payload.get("extensions", True)))
            self._log(wid, [f"[{'switch' if ref else 'update'}] {r.line()}" for r in results])
            with self._lock:
                self._entry(wid)["version"] = version_text(installed_info(svc.webui_dir(wid)))
            if not results[0].ok:
                raise RuntimeError(results[0].error)

        self._run(wid, "switching" if ref else "updating", make, "launch.switch" if ref else "launch.update")

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
        res = await svc.launch(wid, gpu=form["gpu"], cpu=True if form["gpu"] is None else None,
                               port=getattr(settings(), "webui_port", 0) or None, args=form["args"],
                               tunnels=form["tunnels"], wait=True)
        with self._lock:
            st = self._entry(wid)
            for t in res.tunnels:
                apply_tunnel(st, t["tool"], str(t.get("state") or "ready"), t)
                if t.get("password"):
                    row = next(r for r in st["tunnels"] if r["tool"] == t["tool"])
                    row["secret"] = True
                    self._secrets.add(wid, t["tool"], str(t.get("user") or ""), str(t["password"]))
            if res.errors:
                st["error"] = redact("; ".join(res.errors))[:MESSAGE_CHARS]
        self._secrets.send(self.panel)

    def stop(self, payload: dict[str, Any]) -> None:
        wid = parse_form({"webui": payload.get("webui")})["webui"]

        async def make(svc: WebUIService) -> None:
            await svc.stop(wid)
            self._secrets.forget(wid)
            with self._lock:
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
    def secret_seen(self, payload: dict[str, Any]) -> None:
        self._secrets.seen(str(payload.get("webui")), str(payload.get("tool")))

    def hello(self) -> None:
        self._secrets.send(self.panel)

    def dismiss(self, payload: dict[str, Any]) -> None:
        with self._lock:
            self._entry(str(payload.get("webui") or "")).update(error="", retry="")
        self._push()


def _default_service() -> WebUIService:
    from sdpanel.webuis import webui_service

    from ._services import storage_root

    return webui_service(storage_root())


# ---- registry glue -------------------------------------------------------------------------

_slot = PanelSlot("_sdp_launch", "Launch", LaunchController)
controller = _slot.get


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
        "launch.update": lambda p, m: controller(p).update(m),
        "launch.switch": lambda p, m: controller(p).update(m, switch=True),
        "launch.reload": lambda p, _m: controller(p).reload(),
        "launch.hello": lambda p, _m: controller(p).hello(),
        "launch.secret_seen": lambda p, m: controller(p).secret_seen(m),
        "launch.dismiss": lambda p, m: controller(p).dismiss(m),
    },
    attach=_slot.attach,
    order=40,  # after Downloads (30): models in, then launch the WebUI
)
