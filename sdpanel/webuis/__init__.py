"""WebUIs: registry, install (package or git), extensions, processes, proxy and tunnels.

Front ends use :class:`WebUIService` (one per storage root: ``webui_service(storage)``),
whose coroutines run on the runtime loop (``get_runtime().submit(...)``)::

    svc = webui_service(storage)
    await svc.install("comfyui", source=None | URL, replace=False)   # prebuilt package + venv → package URL → git → extensions → link
    await svc.update("comfyui", ref=None | "v0.3.64")               # update (fast-forward) or switch, local changes kept
    res = await svc.launch("comfyui", gpu=0, port=None, args="", tunnels=["cloudflared"], wait=True)
    res.local_url, res.jupyter_url, res.tunnels  # [{tool, url, user, password (show once), ...}]
    await svc.stop("comfyui"); await svc.restart("comfyui"); await svc.attach_all()
    svc.ps(); svc.logs("comfyui", 200)

Events on the bus, topic ``webui:<id>``: ``StateEvent`` key ``<id>`` with state
installing / installed / failed / starting / ready / crashed / stopped (data: pid, port,
url, exit_code, message, tail), key ``tunnel:<tool>`` ready / failed; ``LogEvent`` lines
(key ``<id>`` for the WebUI's output, ``install`` / ``extension:<name>`` for installs);
``ProgressEvent`` key ``install`` while a package downloads and unpacks.
Notebook cell 4: ``launch_from_settings(settings, storage)`` then ``keep_alive(webui, storage)``.
"""

from ._extract import ArchiveError, UnsafeArchiveError, detect_format
from ._git import (
    ExtensionResult,
    StepError,
    install_extensions,
    install_git,
    remove_extension,
    update_extension,
)
from ._install import MARKER, InstallError, InstallResult, install_package, installed_info
from ._process import (
    LaunchSpec,
    ProcessManager,
    WebUICrashed,
    WebUIProcess,
    WebUIStartTimeout,
    free_port,
    read_records,
)
from ._proxy import AuthProxy
from ._registry import (
    Extension,
    NoWebUIPython,
    WebUIInfo,
    configured_python,
    launch_spec,
    tunnel_table,
    webui_info,
    webui_python,
    webuis,
)
from ._service import (
    LaunchResult,
    WebUIService,
    default_webuis_dir,
    keep_alive,
    launch_from_settings,
    webui_service,
)
from ._tunnels import Tunnel, TunnelError, jupyter_proxy_url, open_tunnel

__all__ = [
    "AuthProxy",
    "ExtensionResult",
    "LaunchResult",
    "StepError",
    "Tunnel",
    "TunnelError",
    "WebUIService",
    "default_webuis_dir",
    "install_extensions",
    "keep_alive",
    "launch_from_settings",
    "install_git",
    "jupyter_proxy_url",
    "open_tunnel",
    "remove_extension",
    "update_extension",
    "webui_service",
    "MARKER",
    "ArchiveError",
    "Extension",
    "InstallError",
    "InstallResult",
    "LaunchSpec",
    "ProcessManager",
    "UnsafeArchiveError",
    "WebUICrashed",
    "WebUIInfo",
    "WebUIProcess",
    "WebUIStartTimeout",
    "detect_format",
    "free_port",
    "install_package",
    "installed_info",
    "launch_spec",
    "read_records",
    "tunnel_table",
    "webui_info",
    "webui_python",
    "NoWebUIPython",
    "configured_python",
    "webuis",
]
