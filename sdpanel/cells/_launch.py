"""Cell 4, Launch: the WebUI picked in cell 2, installed when missing, started linked to the
store, reached through its links.

Nothing starts unless the ``launch`` setting (``LAUNCH`` in the Settings cell) is on: a
WebUI install downloads gigabytes, so running the notebook on its defaults (papermill, a
"run all" to look around) must not do it.

Interactive, the cell returns at once with the Panel on its Launch tab; with ``launch`` on,
the install (if needed) and the start run in the background and show there. Headless, it
installs if needed, starts, waits until the WebUI answers, prints the links and, while
``keep_alive`` is on, blocks as long as the WebUI runs. ``generate`` (``GENERATE``) is a
prompt made into images here: on the WebUI once it answers, or with LAUNCH off on the
built-in engine (no WebUI at all; headless it blocks until the PNGs are saved). A failure ends the cell with one
sentence naming the cause and the fix (no traceback).
"""

from __future__ import annotations

from typing import Any

from ._settings_cell import current_settings, is_headless

__all__ = ["LaunchCellError", "launch", "launch_error_sentence"]


class LaunchCellError(RuntimeError):
    """The WebUI did not start. IPython shows only the message (no traceback)."""

    def _render_traceback_(self) -> list[str]:
        return [f"LaunchCellError: {self}"]


def launch_error_sentence(label: str, exc: BaseException) -> str:
    """One sentence for a failed install or start: what happened, then what to do."""
    from sdpanel.settings import redact
    from sdpanel.webuis import (
        ArchiveError,
        InstallError,
        StepError,
        WebUICrashed,
        WebUIStartTimeout,
    )

    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(". ")
    if isinstance(exc, WebUICrashed):
        code = "an unknown code" if exc.exit_code is None else f"code {exc.exit_code}"
        last = next((line.strip() for line in reversed(exc.tail) if line.strip()), "")
        shown = f" (last line: {last[:160]!r})" if last else ""
        text = (f"{label} exited with {code} while starting{shown}; fix the cause in the log above "
                f"(arguments, missing packages, GPU) and run this cell again.")
    elif isinstance(exc, WebUIStartTimeout):
        text = (f"{label} did not answer in time and was stopped; read the log above (a slow first "
                f"start may need a longer wait) and run this cell again.")
    elif isinstance(exc, InstallError | ArchiveError | StepError):
        text = (f"{label} could not be installed: {first}; check the network or the package URL "
                f"and run this cell again.")
    elif isinstance(exc, OSError) and "in use" in str(exc).lower():
        text = f"{label} could not start: {first}; stop what uses that port or set WEBUI_PORT to 0."
    else:
        text = f"{label} could not be launched: {first}; fix that and run this cell again."
    return redact(text)


def _show_panel(settings: Any, start: bool) -> None:
    from sdpanel.panels import Panel
    from sdpanel.panels._launch_tab import controller

    panel = Panel()
    # The cell's purpose is this tab and this WebUI; the browser owns the choice from here on.
    panel.active_tab = "launch"
    panel.launch_webui = settings.webui
    if start:
        ctl = controller(panel)
        st = ctl.snapshot()[0].get(settings.webui, {})
        if st.get("state") not in ("ready", "starting") and not st.get("busy"):
            tunnels = [] if settings.tunnel in ("", "none") else [settings.tunnel]
            try:
                ctl.start({"webui": settings.webui, "gpu": _gpu_choice(settings), "args": settings.launch_args,
                           "tunnels": tunnels}, install_missing=True)
            except Exception as exc:  # noqa: BLE001 - shown on the tab; the cell still shows the panel
                panel.toast(str(exc), level="error")
    if settings.generate.strip() and not start:
        # With LAUNCH on the WebUI is still starting: queueing now would hand the job to
        # the built-in engine, so the prompt waits for the user on the Generate tab.
        from sdpanel.generate._validate import list_models
        from sdpanel.panels._generate_tab import controller as generate_controller
        from sdpanel.panels._services import storage_root

        from ._generate import _job_fields, parse_options

        # Queued like a click on Generate: a running WebUI, else the built-in engine.
        fields = _job_fields(settings.generate, parse_options(settings.generate_options),
                             list_models(storage_root(), "checkpoints"))
        generate_controller(panel).submit(fields)
        tab, news = "generate", "your prompt is queued"  # nothing to launch: the images are what to see
    else:
        tab, news = "launch", f"{settings.webui}: starting" if start else ""
    from ._panel_view import show_panel_tab

    show_panel_tab(panel, tab, news)


def _gpu_choice(settings: Any) -> int | None:
    from sdpanel.webuis._service import _has_gpu

    return int(settings.gpu_index) if _has_gpu() else None


def launch(**params: Any) -> Any:
    """Cell 4. Interactive: show the Panel on the Launch tab (starting the WebUI in the
    background when ``launch`` is on) and return None. Headless: install, start, wait,
    print the links, keep alive per ``keep_alive``; returns the ``LaunchResult``."""
    from sdpanel.webuis import webui_info

    settings = current_settings(**params)
    label = webui_info(settings.webui).label
    if not is_headless():
        _show_panel(settings, start=bool(settings.launch))
        return None
    if not settings.launch:
        print(f"Launch: off, so {label} is not installed or started here. Set LAUNCH = True in the "
              "Settings cell (or run `sdpanel launch " + settings.webui + "`) to start it.")
        if settings.generate.strip():  # no WebUI: the built-in engine makes the images
            return _generate_prompt(settings)
        return None
    return _launch_headless(settings, label)


def _generate_prompt(settings: Any) -> Any:
    """GENERATE, headless: the images of the prompt, printed where they are (the Generate
    cell's code, so its messages are the same)."""
    from ._generate import generate, parse_options

    return generate(settings.generate, **parse_options(settings.generate_options))


def _launch_headless(settings: Any, label: str) -> Any:
    from sdpanel.platforms import detect_platform
    from sdpanel.settings import redact
    from sdpanel.storage import StorageRoot
    from sdpanel.webuis import (
        WebUICrashed,
        installed_info,
        keep_alive,
        launch_from_settings,
        webui_service,
    )

    root = StorageRoot.at(settings.storage or detect_platform().storage_root).ensure()
    svc = webui_service(root)
    if installed_info(svc.webui_dir(settings.webui)) is None:
        print(f"Launch: installing {label} into {svc.webui_dir(settings.webui)} …", flush=True)
    print(f"Launch: starting {label} and waiting until it answers …", flush=True)
    try:
        res = launch_from_settings(settings, root)
    except Exception as exc:  # noqa: BLE001 - one clean sentence instead of a traceback
        if isinstance(exc, WebUICrashed) and exc.tail:
            print("Last log lines:\n" + "\n".join(f"  | {redact(x)}" for x in exc.tail[-15:]))
        raise LaunchCellError(launch_error_sentence(label, exc)) from None
    # The summary carries the tunnel passwords: the one place a headless run shows them.
    print(res.summary())
    platform = detect_platform()
    if platform.reach == "tunnel" and not res.tunnels:
        # Colab / Kaggle: 127.0.0.1 is the notebook's machine, not the user's.
        print(f"Launch: on {platform.label} your browser cannot open the local link; set TUNNEL "
              '(e.g. "cloudflared") in the Settings cell and run this cell again.')
    if settings.generate.strip():  # before keep-alive, which blocks while the WebUI runs
        _generate_prompt(settings)
    if settings.keep_alive:
        print(f"Launch: keeping this cell running while {label} runs (KEEP_ALIVE); stop it with "
              f"`sdpanel stop {settings.webui}` or interrupt the kernel.", flush=True)
        code = keep_alive(settings.webui, root)
        print(f"Launch: {label} stopped" + (f" (exit code {code})" if code is not None else ""))
    return res
