"""The sdpanel server extension through a real jupyter-server (pytest-jupyter), with
Jupyter's authentication on."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from sdpanel.server import ROUTES, SdpanelHandler, StatusHandler


def _record(storage: Path, name: str, **data: Any) -> None:
    pids = storage / ".sdpanel" / "pids"
    pids.mkdir(parents=True, exist_ok=True)
    (pids / f"{name}.json").write_text(json.dumps(data), encoding="utf-8")


@pytest.fixture
def live_process():
    """A real child process standing in for a detached aria2c / WebUI."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_status_answers_authenticated_call(jp_fetch, run, storage: Path) -> None:
    response = run(jp_fetch("sdpanel", "api", "status"))
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    data = json.loads(response.body)
    assert {"version", "platform", "system", "storage", "processes", "errors"} <= set(data)
    assert data["platform"]["name"] == "local"
    assert data["storage"]["root"] == str(storage.resolve())
    assert data["storage"]["total_bytes"] >= data["storage"]["free_bytes"] > 0
    assert "cpu" in data["system"] and "gpu" in data["system"]
    assert data["processes"] == []
    assert data["errors"] == {}


def test_status_lists_running_and_stale_processes(
        jp_fetch, run, storage: Path, live_process: subprocess.Popen[bytes],
        planted_tokens: dict[str, str]) -> None:
    started = time.time() - 1
    token = planted_tokens["NGROK_TOKEN"]
    _record(storage, "aria2", pid=live_process.pid, port=6800, started=started,
            cmd=["aria2c", "--rpc-secret=hunter22secret"], secret="hunter22secret",
            url=f"https://tunnel.example/?token={token}")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _record(storage, "webui-comfyui", pid=dead.pid, port=8188, started=started)
    (storage / ".sdpanel" / "pids" / "broken.json").write_text("{not json", encoding="utf-8")

    data = json.loads(run(jp_fetch("sdpanel", "api", "status")).body)
    procs = {p["name"]: p for p in data["processes"]}
    assert procs["aria2"]["alive"] is True and procs["aria2"]["stale"] is False
    assert procs["aria2"]["port"] == 6800 and procs["aria2"]["pid"] == live_process.pid
    assert procs["webui-comfyui"]["alive"] is False and procs["webui-comfyui"]["stale"] is True
    assert procs["broken"]["stale"] is True and "unreadable" in procs["broken"]["reason"]
    # Command lines and secrets in a record never leave the server.
    assert "hunter22secret" not in json.dumps(data) and token not in json.dumps(data)
    assert "cmd" not in procs["aria2"] and procs["aria2"]["url"].startswith("https://tunnel.")


def test_status_refuses_unauthenticated_call(
        jp_serverapp, http_server_client, run, jp_base_url: str) -> None:
    url = f"{jp_base_url.rstrip('/')}/sdpanel/api/status"
    with pytest.raises(HTTPClientError) as err:
        run(http_server_client.fetch(url, follow_redirects=False))
    assert err.value.code in (401, 403)


def test_status_refuses_a_wrong_token(jp_fetch, run) -> None:
    with pytest.raises(HTTPClientError) as err:
        run(jp_fetch("sdpanel", "api", "status", headers={"Authorization": "token wrong"}))
    assert err.value.code in (401, 403)


def test_post_without_credentials_or_xsrf_is_refused(
        jp_serverapp, http_server_client, run, jp_base_url: str) -> None:
    """Status is read-only; a write without token or XSRF cookie never gets through."""
    url = f"{jp_base_url.rstrip('/')}/sdpanel/api/status"
    with pytest.raises(HTTPClientError) as err:
        run(http_server_client.fetch(url, method="POST", body="{}", follow_redirects=False))
    assert err.value.code in (403, 405)


def test_route_table_is_extendable() -> None:
    assert ("status", StatusHandler) in ROUTES
    assert issubclass(StatusHandler, SdpanelHandler)
    assert StatusHandler.auth_resource == "sdpanel"


def test_extension_is_declared_and_enabled_by_config() -> None:
    import sdpanel.server as ext

    assert ext._jupyter_server_extension_points() == [{"module": "sdpanel.server"}]
    # Installed by the wheel's shared-data as etc/jupyter/jupyter_server_config.d/sdpanel.json.
    config = Path(ext.__file__).parent / "config" / "sdpanel.json"
    assert json.loads(config.read_text()) == {
        "ServerApp": {"jpserver_extensions": {"sdpanel.server": True}}}


def test_feature_routes_are_mounted(jp_fetch, run) -> None:
    """Feature modules' routes (the jobs API) are mounted by our one extension."""
    import sdpanel.server as ext

    patterns = {p for p, _ in ext.ROUTES}
    assert {"status", "jobs"} <= patterns
    response = run(jp_fetch("sdpanel", "api", "openapi.json"))
    assert response.code == 200


def test_a_broken_feature_is_skipped_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    import sdpanel.server as ext
    from sdpanel.server import _handlers

    monkeypatch.setattr(_handlers, "FEATURE_ROUTE_MODULES", ("sdpanel.no_such_feature",))
    problems = ext.load_feature_routes()
    assert len(problems) == 1 and "sdpanel.no_such_feature" in problems[0]
    assert ("status", StatusHandler) in ext.ROUTES
