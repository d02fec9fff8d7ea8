"""`sdpanel lab` for real: JupyterLab starts on the notebook with our server extension
(authenticated) and the SD sidebar extension loaded."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "sdpanel-lab-test-token-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("lab")
    port = _free_port()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTER_DATA_DIR": str(base / "data"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "SDPANEL_STORAGE": str(base / "store"),
        "SDPANEL_PLATFORM": "local",
    }
    log = (base / "lab.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sdpanel", "lab", "--no-browser", "--port", str(port), "--",
         "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"sdpanel lab exited {proc.returncode}: "
                            f"{(base / 'lab.log').read_text()[-2000:]}")
            try:
                if _get(f"{url}/api/status?token={TOKEN}")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not answer within 90 s")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # our own session: sdpanel lab and its server
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.mark.slow
def test_status_api_is_served_behind_the_token(lab: str) -> None:
    code, body = _get(f"{lab}/sdpanel/api/status?token={TOKEN}")
    assert code == 200 and json.loads(body)["platform"]["name"] == "local"
    assert _get(f"{lab}/sdpanel/api/status")[0] in (401, 403)


@pytest.mark.slow
def test_lab_opens_the_notebook_with_the_sidebar_extension(lab: str) -> None:
    code, page = _get(f"{lab}/lab?token={TOKEN}")
    assert code == 200
    config = json.loads(page.split('id="jupyter-config-data"', 1)[1]
                        .split(">", 1)[1].split("</script>", 1)[0])
    assert "sdpanel" in {ext["name"] for ext in config["federated_extensions"]}
    code, body = _get(f"{lab}/api/contents/SDPanel.ipynb?content=0&token={TOKEN}")
    assert code == 200 and json.loads(body)["type"] == "notebook"
