"""Zero debugging: when something is wrong the five-cell run stops at the right cell with
one sentence naming the cause and the fix, the kernel still alive (the cell raised its own
error: papermill reports it, not a dead kernel), nothing half-done marked done, and a re-run
after the fix completes without redoing finished work."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures.disks import small_disk
from tests.fixtures.range_server import RangeServer

from ._harness import (
    CELLS,
    Host,
    Run,
    Servers,
    finish,
    five_cell_params,
    http_get,
    kernel_env,
    run_notebook,
    start_notebook,
    stop_started,
)

pytestmark = pytest.mark.slow


def file_requests(servers: Servers) -> int:
    """How many requests so far fetched model bytes (CivitAI signed storage, HF CDN); see
    :func:`files_fetched_since`."""
    return len(_fetches(servers))


def _fetches(servers: Servers) -> list[str]:
    """Body requests for model bytes, each named by its file: CivitAI's signed storage
    (the key of one download) and the HF CDN (mapped back to the file name)."""
    import hashlib

    names = {hashlib.sha256(data).hexdigest(): path.rsplit("/", 1)[-1]
             for repo in servers.hf.repos.values() for path, data in repo["files"].items()}
    civ = [r.path for r in servers.civitai.requests if r.path.startswith("/storage/") and r.method == "GET"]
    hf = [names.get(r.path.rsplit("/", 1)[-1], r.path) for r in servers.hf.requests
          if r.path.startswith("/cdn/") and r.method == "GET"]
    return civ + hf


def files_fetched_since(servers: Servers, mark: int) -> set[str]:
    """The distinct files (CivitAI version download path, HF file name) fetched after
    ``mark`` (a :func:`file_requests` count): engines may use several requests per file."""
    return set(_fetches(servers)[mark:])


def package_requests(servers: Servers) -> int:
    return len(servers.packages.requests(path_contains="portable.zip", method="GET"))


def assert_stopped_at(run: Run, cell: str, ename: str, *needles: str) -> str:
    """The run failed in ``cell`` alone with the cell's own one-sentence error."""
    assert run.rc != 0, "papermill should fail"
    errors = run.errors()
    assert [(c, n) for c, n, _ in errors] == [(cell, ename)], (errors, run.stderr[-2000:])
    message = errors[0][2]
    print(f"\n[{cell}] {ename}: {message}")  # the troubleshooting table is built from these
    assert "\n" not in message and len(message) < 600, message
    for needle in needles:
        assert needle.lower() in message.lower(), message
    later = CELLS[CELLS.index(cell) + 1:]
    assert not any(run.ran(c) for c in later), "cells after the failing one must not run"
    # papermill names the failing cell (its execution count: the injected-parameters cell
    # counts too) and the kernel's own exception; a dead kernel would read DeadKernelError.
    count = run.cells[cell]["execution_count"]
    assert f'Exception encountered at "In [{count}]"' in run.stderr, run.stderr[-1500:]
    assert f"{ename}: {message}" in run.stderr
    assert "DeadKernelError" not in run.stderr
    return message


def assert_finished_right(host: Host, servers: Servers) -> None:
    for name, (kind, data) in servers.expected_files().items():
        path = host.storage / kind / name
        if path.exists():
            assert path.read_bytes() == data, f"{kind}/{name} is under its final name but wrong"


@pytest.fixture
def fresh(servers: Servers, make_host: Callable[[str], Host], tmp_path: Path) -> Iterator[tuple[Host, dict[str, str]]]:
    host = make_host("runpod")
    yield host, kernel_env(host, servers, tmp_path)


def safetensors_of(n: int) -> bytes:
    """A valid .safetensors file of about ``n`` bytes, made fast (the queue checks headers)."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + bytes(range(256)) * (n // 256)


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens there


def test_no_network_stops_at_download_then_rerun_completes(
        servers: Servers, fresh: tuple[Host, dict[str, str]]) -> None:
    host, env = fresh
    civ, hf = (f"http://127.0.0.1:{dead_port()}" for _ in range(2))
    offline = {**env, "SDPANEL_CIVITAI_BASE_URL": civ, "SDPANEL_HF_BASE_URL": hf}
    links = [f"{civ}/models/1001", f"{hf}/sdpanel-test/upscalers/resolve/main/4x-Tiny.pth"]
    run = run_notebook("fail-offline.ipynb", offline, five_cell_params(servers, MODEL_LINKS=",".join(links)))
    message = assert_stopped_at(run, "cell-download", "DownloadCellError", "3 of 3 downloads failed",
                                "check the network")
    summary = run.text("cell-download")
    # The per-file reason names the unreachable host and what to do.
    assert "127.0.0.1" in summary and ("network" in summary.lower() or "connect" in summary.lower()), summary
    assert message.endswith(".")
    assert not list(host.storage.rglob("*.safetensors"))
    again = run_notebook("fail-offline-fixed.ipynb", env, five_cell_params(servers))
    assert again.rc == 0 and again.link(), again.stderr[-2000:]


GATED = {
    # site: (link path on its server, token variable, file name)
    "huggingface": ("/sdpanel-test/gated-flux/resolve/main/flux-tiny.safetensors", "HF_TOKEN", "flux-tiny.safetensors"),
    "civitai": ("/models/1013", "CIVITAI_TOKEN", "MembersOnly_v1.safetensors"),
}


@pytest.mark.parametrize("site", list(GATED))
def test_missing_token_for_gated_model(site: str, servers: Servers, fresh: tuple[Host, dict[str, str]]) -> None:
    host, env = fresh
    path, var, filename = GATED[site]
    server = servers.hf if site == "huggingface" else servers.civitai
    base = servers.hf.endpoint if site == "huggingface" else servers.civitai.base_url
    params = five_cell_params(servers, MODEL_LINKS=",".join([*servers.links(), base + path]))
    no_token = {k: v for k, v in env.items() if k != var}
    run = run_notebook(f"fail-gated-{site}.ipynb", no_token, params)
    assert_stopped_at(run, "cell-download", "DownloadCellError", "1 of 5", f"set {var}")
    assert not any(host.storage.rglob(filename)), "a file it could not download is in the store"
    assert_finished_right(host, servers)
    fetched = file_requests(servers)
    # The fix: the token in the environment; only the gated file is fetched on the re-run.
    fixed = {**no_token, var: server.token}
    again = run_notebook(f"fail-gated-{site}-fixed.ipynb", fixed, params)
    assert again.rc == 0 and again.errors() == [], again.stderr[-2000:]
    assert len(files_fetched_since(servers, fetched)) == 1
    assert any(host.storage.rglob(filename))
    assert server.token not in again.path.read_text()


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    with small_disk(path, size):
        try:
            yield path
        finally:
            stop_started(path)  # its pid records vanish with the mount: stop what they name first


def test_full_disk_stops_at_download_then_rerun_after_freeing(
        servers: Servers, fresh: tuple[Host, dict[str, str]]) -> None:
    """A real small disk: a tmpfs mounted on the store (root only; skipped elsewhere)."""
    host, env = fresh
    # Downloads keep 5 % of the disk free (at most 256 MiB): the small models fit in 48 MiB,
    # this 64 MiB one not.
    big = safetensors_of(64 * 1024 * 1024)
    servers.packages.add_file("big_model.safetensors", big)
    params = five_cell_params(servers, MODEL_LINKS=",".join([*servers.links(),
                                                             servers.packages.url("big_model.safetensors")]))
    with tmpfs(host.storage, "48m"):
        run = run_notebook("fail-disk.ipynb", env, params)
        assert_stopped_at(run, "cell-download", "DownloadCellError", "1 of 5", "Not enough disk space",
                          "point SDPANEL_STORAGE at a bigger disk")
        summary = run.text("cell-download")
        line = next(ln for ln in summary.splitlines() if "big_model" in ln)
        assert "Not enough disk space" in line and ("sdpanel clean" in line or "SDPANEL_STORAGE" in line), line
        assert not any(host.storage.rglob("big_model.safetensors"))
        assert_finished_right(host, servers)
        fetched = file_requests(servers)
        # The fix: a bigger disk (here: the same mount grown).
        subprocess.run(["mount", "-o", "remount,size=400m", str(host.storage)], check=True)
        again = run_notebook("fail-disk-fixed.ipynb", env, params)
        assert again.rc == 0 and again.errors() == [], again.stderr[-2000:]
        assert file_requests(servers) == fetched  # the four small ones were not fetched again
        [placed] = list(host.storage.rglob("big_model.safetensors"))
        assert placed.read_bytes() == big


def test_webui_package_404_stops_at_launch(servers: Servers, fresh: tuple[Host, dict[str, str]]) -> None:
    host, env = fresh
    broken = {**env, "SDPANEL_WEBUI_PACKAGE_URL": servers.packages.url("no-such-ComfyUI.zip")}
    run = run_notebook("fail-404.ipynb", broken, five_cell_params(servers))
    assert_stopped_at(run, "cell-launch", "LaunchCellError", "could not be installed", "404",
                      "package URL")
    assert (host.work / "webuis" / "comfyui" / ".sdpanel-install.json").exists() is False
    assert not (host.work / "webuis" / "comfyui").exists() or not any((host.work / "webuis" / "comfyui").iterdir())
    fetched = file_requests(servers)
    again = run_notebook("fail-404-fixed.ipynb", env, five_cell_params(servers))
    assert again.rc == 0 and again.link(), again.stderr[-2000:]
    assert file_requests(servers) == fetched  # cell 3 found every model done


def test_webui_crash_at_start_then_rerun_without_reinstall(
        servers: Servers, fresh: tuple[Host, dict[str, str]]) -> None:
    host, env = fresh
    run = run_notebook("fail-crash.ipynb", {**env, "STUB_WEBUI_CRASH": "1"}, five_cell_params(servers))
    assert_stopped_at(run, "cell-launch", "LaunchCellError", "exited with code 3", "run this cell again")
    assert "stub crash requested" in run.text("cell-launch")  # the log's last lines are shown
    installs = package_requests(servers)
    fetched = file_requests(servers)
    again = run_notebook("fail-crash-fixed.ipynb", env, five_cell_params(servers))
    assert again.rc == 0 and again.link(), again.stderr[-2000:]
    assert package_requests(servers) == installs and file_requests(servers) == fetched
    assert "installing" not in again.text("cell-launch").lower()


def test_port_taken_moves_to_a_free_port(servers: Servers, fresh: tuple[Host, dict[str, str]]) -> None:
    """A taken port is not an error to debug: the WebUI starts on the next free port and the
    printed link is the one that answers (not the program holding the port)."""
    host, env = fresh
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        run = run_notebook("port-taken.ipynb", {**env, "SDPANEL_WEBUI_PORT": str(taken)}, five_cell_params(servers))
        assert run.rc == 0 and run.errors() == [], run.stderr[-2000:]
        link = run.link()
        assert link and not link.endswith(f":{taken}")
        assert http_get(link + "/system_stats")[0] == 200


def _kernel_pids(papermill: subprocess.Popen[str]) -> list[int]:
    import psutil

    kids = psutil.Process(papermill.pid).children(recursive=True)
    return [k.pid for k in kids if "ipykernel" in " ".join(k.cmdline())]


def test_interrupted_run_resumes_without_redoing(servers: Servers, fresh: tuple[Host, dict[str, str]]) -> None:
    """The kernel dies mid-download (a restart, an OOM kill): the partial file never has
    the model's name, and the re-run finishes it from what is there."""
    host, env = fresh
    data = safetensors_of(12 * 1024 * 1024)
    # 2 connections of 1 MiB/s: about 6 s for the file, so the kill lands mid-way.
    with RangeServer(rate=1024 * 1024) as slow:
        slow.add_file("slow_model.safetensors", data)
        params = five_cell_params(servers, MODEL_LINKS=",".join([*servers.links(), slow.url("slow_model.safetensors")]),
                                  CONNECTIONS_PER_FILE=2)
        proc, out_path = start_notebook("interrupted.ipynb", env, params)
        deadline = time.monotonic() + 120
        partial: list[Path] = []
        while time.monotonic() < deadline and not partial:
            time.sleep(0.2)
            partial = [p for p in host.storage.rglob("slow_model*") if p.is_file() and p.stat().st_size > 0]
        assert partial, "the download never started"
        time.sleep(2.0)  # the journal is written at most once a second while a file runs
        for pid in _kernel_pids(proc):
            os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
        killed = finish(out_path, proc.returncode, err, 0.0)
        assert killed.rc != 0 and ("DeadKernelError" in err or "Kernel died" in err), err[-2000:]
        final = list(host.storage.rglob("slow_model.safetensors"))
        assert final == [], "the model's name appeared before the download finished"
        served_before = sum(r["bytes_sent"] or 0 for r in slow.requests("slow_model"))
        again = run_notebook("interrupted-rerun.ipynb", env, params)
        assert again.rc == 0 and again.errors() == [], again.stderr[-2000:]
        [path] = list(host.storage.rglob("slow_model.safetensors"))
        assert path.read_bytes() == data
        served = sum(r["bytes_sent"] or 0 for r in slow.requests("slow_model"))
        # Resumed from the partial file: far less than a second full download.
        assert served < len(data) * 1.25, (served_before, served, len(data), [
            (r["method"], r["range"], r["bytes_sent"], r["status"]) for r in slow.requests("slow_model")])
        assert again.link()
