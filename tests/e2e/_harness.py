"""The end-to-end harness: the notebook's five cells run by papermill (as the README says)
against local servers only, on a platform faked in a temporary root.

- :func:`local_servers`: a CivitAI- and a Hugging Face-compatible server, and a range
  server serving stub-WebUI packages (``tests/fixtures/``); the HF server also holds the
  file of one preset, so presets are tested through the mirror they are moved onto.
- :func:`fake_platform`: the markers and folders of one row of ``configs/platforms.json``
  under a temporary root (``SDPANEL_FS_ROOT``), for the kernel's environment.
- :func:`run_notebook`: ``papermill notebook/SDPanel.ipynb out.ipynb -p ...`` in a child
  process with that environment; returns the output notebook, exit code and timings.
- :func:`stop_started`: stops what a run left running detached (WebUI, aria2c daemon), by
  the pids the run recorded under ``<storage>/.sdpanel/pids``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.fixtures.civitai_server import CivitAIServer, fake_safetensors
from tests.fixtures.hf_server import HFServer
from tests.fixtures.range_server import RangeServer
from tests.fixtures.webui_packages import build_tree, make_zip

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebook" / "SDPanel.ipynb"
ARTIFACTS = ROOT / "tests" / "artifacts" / "e2e"
CELLS = ("cell-setup", "cell-settings", "cell-download", "cell-launch", "cell-storage")
MAX_NOTEBOOK_BYTES = 1024 * 1024
# The one preset whose hash is not pinned (configs/models), so the mirror can serve any bytes.
PRESET = "sd15-controlnet-canny"
CIVITAI_MODELS = (1001, 1002)  # a checkpoint and a LoRA
HF_FILE = ("sdpanel-test/upscalers", "4x-Tiny.pth")
# The stub WebUI packages served, by flavour: the archive's top folder.
WEBUI_TOP = {"comfyui": "ComfyUI", "forge": "stable-diffusion-webui-forge"}


@dataclass
class Servers:
    civitai: CivitAIServer
    hf: HFServer
    packages: RangeServer
    package_urls: dict[str, str]
    preset_bytes: bytes

    def links(self) -> list[str]:
        civ = [f"{self.civitai.base_url}/models/{m}" for m in CIVITAI_MODELS]
        return [*civ, f"{self.hf.endpoint}/{HF_FILE[0]}/resolve/main/{HF_FILE[1]}"]

    def expected_files(self) -> dict[str, tuple[str, bytes]]:
        """file name -> (store kind, bytes) of what the default selection downloads."""
        out: dict[str, tuple[str, bytes]] = {}
        for model_id, kind in zip(CIVITAI_MODELS, ("checkpoints", "loras"), strict=True):
            model = next(m for m in self.civitai.models if m["id"] == model_id)
            f = next(f for f in model["modelVersions"][0]["files"] if f.get("primary", True))
            out[f["name"]] = (kind, self.civitai.payload(f["id"]))
        out[HF_FILE[1]] = ("upscalers", self.hf.payload(*HF_FILE))
        from sdpanel.sources import get_preset

        p = get_preset(PRESET)
        out[p["filename"]] = (p["kind"], self.preset_bytes)
        return out


def _add_preset_repo(hf: HFServer, preset_id: str) -> bytes:
    """Put the preset's file on the HF-compatible server at the preset's own repo path."""
    from sdpanel.sources import get_preset

    p = get_preset(preset_id)
    owner, name, _resolve, _rev, path = urlsplit(p["url"]).path.strip("/").split("/", 4)
    data = fake_safetensors("preset:" + preset_id, 4000)
    key = f"model:{owner}/{name}"
    hf.repos[key] = {"gated": False, "commit": hashlib.sha1(key.encode()).hexdigest(), "files": {path: data}}
    hf._by_sha[hashlib.sha256(data).hexdigest()] = data  # noqa: SLF001 - the fixture's CDN table
    return data


@contextlib.contextmanager
def local_servers(tmp: Path, *, package_rate: int | None = None) -> Iterator[Servers]:
    """Every server a five-cell run talks to, on loopback ports picked at runtime."""
    urls: dict[str, str] = {}
    with CivitAIServer() as civ, HFServer() as hf, RangeServer(rate=package_rate) as pkgs:
        preset = _add_preset_repo(hf, PRESET)
        for flavour, top in WEBUI_TOP.items():
            tree = build_tree(tmp / f"tree-{flavour}", flavour)
            for marker in tree.glob("models/*/put_here"):  # named as the real packages name them
                marker.rename(marker.with_name(f"put_{marker.parent.name.lower()}_here"))
            pkg = make_zip(tree, tmp / f"{top}-portable.zip", top=top)
            pkgs.add_file(pkg.name, pkg)
            urls[flavour] = pkgs.url(pkg.name)
        yield Servers(civ, hf, pkgs, urls, preset)


# ---- platforms --------------------------------------------------------------------------

# Per platform: environment markers and folders that exist on such a host.
_FAKES: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "colab": ({"COLAB_GPU": "1", "COLAB_RELEASE_TAG": "release-colab-e2e"}, ("content",)),
    "kaggle": ({"KAGGLE_KERNEL_RUN_TYPE": "Interactive", "KAGGLE_URL_BASE": "https://www.kaggle.com"},
               ("kaggle/temp", "kaggle/working")),
    "lightning": ({"LIGHTNING_CLOUD_PROJECT_ID": "e2e-project"}, ("teamspace/studios/this_studio",)),
    "paperspace": ({"PAPERSPACE_NOTEBOOK_REPO_ID": "e2e", "PAPERSPACE_CLUSTER_ID": "e2e"},
                   ("notebooks", "storage")),
    # Its markers are HOME (not faked: the kernel needs a real home) or the folder.
    "studiolab": ({}, ("home/studio-lab-user",)),
    "runpod": ({"RUNPOD_POD_ID": "e2e-pod"}, ("workspace",)),
    "vast": ({"VAST_CONTAINERLABEL": "C.e2e"}, ("workspace",)),
    "local": ({}, ()),
}


def platform_names() -> list[str]:
    from sdpanel.platforms import platform_names as names

    return names()


def _marker_vars() -> set[str]:
    from sdpanel.platforms import platform_rows

    found: set[str] = set()
    for row in platform_rows():
        markers = row.get("markers", {})
        found |= set(markers.get("env_any", [])) | set(markers.get("env_equals", {}))
    return found - {"HOME"}


@dataclass
class Host:
    name: str
    fs: Path
    env: dict[str, str]
    storage: Path
    work: Path


def fake_platform(name: str, base: Path) -> Host:
    """A host of platform ``name`` under ``base/fs``: its marker variables, its folders,
    ``SDPANEL_FS_ROOT`` pointing there. The local profile has no markers, so its store is
    set with ``SDPANEL_STORAGE`` (else it would be the checkout's own ./storage)."""
    from sdpanel.platforms import detect_platform

    markers, folders = _FAKES[name]
    fs = base / "fs"
    for folder in folders:
        (fs / folder).mkdir(parents=True, exist_ok=True)
    fs.mkdir(parents=True, exist_ok=True)
    env = {"SDPANEL_FS_ROOT": str(fs), **markers}
    if name == "local":
        env["SDPANEL_STORAGE"] = str(fs / "sdpanel-storage")
    info = detect_platform({**base_env(), **env})
    assert info.name == name, f"the fake {name} host is detected as {info.name} ({info.reason})"
    assert Path(info.storage_root).is_relative_to(fs), info
    return Host(name, fs, env, Path(info.storage_root), Path(info.work_dir))


def base_env() -> dict[str, str]:
    """This process's environment without sdpanel settings or real platform markers (the
    planted tokens stay: the run must not leak them)."""
    drop = _marker_vars()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SDPANEL_", "STUB_WEBUI_")) and k not in drop}
    env.pop("HF_ENDPOINT", None)
    env.pop("PYTHONPATH", None)  # the Setup cell finds the checkout itself
    # Children get an allow-listed environment: the stub WebUI is steered by STUB_* only
    # when passed through the documented knob (tests/conftest.py sets it for this process).
    env["SDPANEL_CHILD_ENV"] = "STUB_*"
    return env


def kernel_env(host: Host, servers: Servers, tmp: Path, webui: str = "comfyui",
               extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = base_env()
    env.update(host.env)
    env.update({
        "SDPANEL_CIVITAI_BASE_URL": servers.civitai.base_url,
        "SDPANEL_HF_BASE_URL": servers.hf.endpoint,
        "SDPANEL_WEBUI_PACKAGE_URL": servers.package_urls[webui],
        # The stub WebUI packages carry no venv: they run on this interpreter, named the
        # way a user names an existing Python (launch never picks one in silence).
        "SDPANEL_WEBUI_PYTHON": sys.executable,
        "STUB_WEBUI_DELAY": "0.2",
        "IPYTHONDIR": str(tmp / "ipython"),
        # No internet: anything that would leave loopback (git, pip) fails at once.
        "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
        "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost",
        "PIP_NO_INDEX": "1", "GIT_TERMINAL_PROMPT": "0",
    })
    env.update(extra or {})
    return env


# ---- running the notebook ------------------------------------------------------------------

@dataclass
class Run:
    rc: int
    stderr: str
    seconds: float
    path: Path
    nb: dict[str, Any] = field(default_factory=dict)

    @property
    def cells(self) -> dict[str, dict[str, Any]]:
        return {c.get("id", ""): c for c in self.nb.get("cells", [])}

    def text(self, cell_id: str) -> str:
        parts = []
        for out in self.cells.get(cell_id, {}).get("outputs", []):
            parts.append("".join(out.get("text", "")))
            parts.append("".join(out.get("data", {}).get("text/plain", "")))
        return "".join(parts)

    def errors(self) -> list[tuple[str, str, str]]:
        """(cell id, exception name, message) of every error output."""
        return [(cid, o.get("ename", ""), o.get("evalue", ""))
                for cid, c in self.cells.items() for o in c.get("outputs", []) if o.get("output_type") == "error"]

    def ran(self, cell_id: str) -> bool:
        return self.cells.get(cell_id, {}).get("execution_count") is not None

    def link(self) -> str | None:
        for line in self.text("cell-launch").splitlines():
            if line.strip().startswith("local:"):
                return line.split("local:", 1)[1].strip()
        return None


def _papermill_cmd(out_name: str, params: Mapping[str, Any]) -> tuple[list[str], Path]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / out_name
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "papermill", str(NOTEBOOK), str(out), "--cwd", str(ROOT / "notebook"),
           "--kernel", "python3"]
    for key, value in params.items():
        cmd += ["-p", key, value if isinstance(value, str) else json.dumps(value)]
    return cmd, out


def run_notebook(out_name: str, env: Mapping[str, str], params: Mapping[str, Any], *,
                 timeout: float = 300.0) -> Run:
    """``papermill notebook/SDPanel.ipynb <artifacts>/<out_name> -p K V ...``, the kernel's
    cwd in notebook/ as when a user opens it there. The output lands in tests/artifacts/ so
    the session's planted-token guard scans it too."""
    cmd, out = _papermill_cmd(out_name, params)
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=dict(env))
    return finish(out, done.returncode, done.stderr, time.perf_counter() - started)


def start_notebook(out_name: str, env: Mapping[str, str],
                   params: Mapping[str, Any]) -> tuple[subprocess.Popen[str], Path]:
    """The same run in the background (to kill its kernel); returns it and the output path."""
    cmd, out = _papermill_cmd(out_name, params)
    proc = subprocess.Popen(cmd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    return proc, out


def finish(out: Path, rc: int, stderr: str, seconds: float) -> Run:
    run = Run(rc, stderr, seconds, out)
    if out.is_file():
        run.nb = json.loads(out.read_text(encoding="utf-8"))
    return run


def five_cell_params(servers: Servers, webui: str = "comfyui", **more: Any) -> dict[str, Any]:
    return {"WEBUI": webui, "MODEL_LINKS": ",".join(servers.links()), "MODEL_PRESETS": PRESET,
            "LAUNCH": True, **more}


# ---- clean-up -----------------------------------------------------------------------------

def stop_started(storage: Path) -> list[str]:
    """Stop every process a run recorded under ``<storage>/.sdpanel/pids`` (the WebUI and the
    aria2c daemon start detached, in their own process group, and outlive the kernel). Only
    pids whose command line is still the recorded program are signalled."""
    import psutil

    stopped: list[str] = []
    pids = storage / ".sdpanel" / "pids"
    for rec_path in sorted(pids.glob("*.json")) if pids.is_dir() else []:
        try:
            rec = json.loads(rec_path.read_text())
            proc = psutil.Process(int(rec["pid"]))
            cmd = " ".join(proc.cmdline())
        except (ValueError, KeyError, OSError, psutil.Error):
            continue
        if not any(mark in cmd for mark in ("aria2c", "main.py", "launch.py", "stub_tunnels.py", "cloudflared")):
            continue
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(psutil.Error):
            proc.wait(10)
        # A tunnel record also names the login proxy in front of the WebUI (its own process).
        proxy_pid = rec.get("proxy_pid")
        with contextlib.suppress(psutil.Error, OSError, TypeError, ValueError):
            proxy = psutil.Process(int(proxy_pid))
            if "sdpanel.webuis._proxy" in proxy.cmdline():
                os.killpg(proxy.pid, signal.SIGTERM)
                proxy.wait(10)
        stopped.append(rec_path.stem)
    return stopped


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    with opener.open(url, timeout=timeout) as resp:
        return resp.status, resp.read()


def webui_listing(link: str, webui: str) -> dict[str, list[str]]:
    """What the running WebUI says it sees, by store kind."""
    if webui == "comfyui":
        folders = {"checkpoints": "checkpoints", "loras": "loras", "upscalers": "upscale_models",
                   "controlnet": "controlnet"}
        return {kind: json.loads(http_get(f"{link}/models/{folder}")[1]) for kind, folder in folders.items()}
    ckpt = json.loads(http_get(f"{link}/sdapi/v1/sd-models")[1])
    loras = json.loads(http_get(f"{link}/sdapi/v1/loras")[1])
    return {"checkpoints": [m["title"] for m in ckpt], "loras": [Path(m["path"]).name for m in loras]}
