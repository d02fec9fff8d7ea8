"""Re-run is cheap: the five cells a second time on the same machine skip everything already
done (the installed WebUI, the verified models, the links) and reach the link again. How
long it takes is measured in tests/benchmarks/bench_e2e.py, not asserted here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ._harness import (
    Host,
    Servers,
    five_cell_params,
    http_get,
    kernel_env,
    run_notebook,
    stop_started,
)

pytestmark = pytest.mark.slow


def model_fetches(servers: Servers) -> int:
    return (sum(1 for r in servers.civitai.requests if r.path.startswith("/storage/"))
            + sum(1 for r in servers.hf.requests if r.path.startswith("/cdn/")))


@pytest.mark.parametrize("webui_running", [True, False], ids=["webui-still-up", "webui-stopped"])
def test_second_run_skips_finished_work(webui_running: bool, servers: Servers,
                                        make_host: Callable[[str], Host], tmp_path: Path) -> None:
    host = make_host("lightning")
    env = kernel_env(host, servers, tmp_path)
    params = five_cell_params(servers)
    first = run_notebook("rerun-first.ipynb", env, params)
    assert first.rc == 0 and first.link(), first.stderr[-2000:]
    assert "installing" in first.text("cell-launch").lower()
    if not webui_running:  # a new session: the WebUI is gone, the store and install stay
        stop_started(host.storage)
    packages = len(servers.packages.requests(path_contains="portable.zip"))
    fetched = model_fetches(servers)
    again = run_notebook("rerun-second.ipynb", env, params)
    assert again.rc == 0 and again.errors() == [], again.stderr[-2000:]
    # Nothing downloaded again: no model bytes, no WebUI package.
    assert model_fetches(servers) == fetched, "a finished model was downloaded again"
    assert len(servers.packages.requests(path_contains="portable.zip")) == packages
    assert "installing" not in again.text("cell-launch").lower()
    assert "Downloads: 4 of 4 files downloaded and verified" in again.text("cell-download")
    link = again.link()
    assert link and http_get(link)[0] == 200
    if webui_running:  # re-attached to the same process, same link
        assert link == first.link()
