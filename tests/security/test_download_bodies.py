"""What a download saves, checked the way a user runs it (``sdpanel download``): a JSON
answer in place of a model is refused by both engines alike (issue 17, item 9: the aria2
engine saved a 256-byte JSON body the Python engine refused, because only the Python
engine reported a Content-Type); a server-chosen name loses its bidi override."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.range_server import RangeServer

REPO = Path(__file__).resolve().parents[2]
ENGINES = ["python"] + (["aria2"] if shutil.which("aria2c") else [])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sdpanel", "download", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def _stop_aria2(store: Path) -> None:
    from sdpanel.downloads import Aria2Daemon

    asyncio.run(Aria2Daemon(store).shutdown(grace=0.2))


@pytest.mark.parametrize("engine", ENGINES)
def test_json_body_in_place_of_a_model_is_refused_by_both_engines(engine: str, tmp_path: Path) -> None:
    body = json.dumps({"status": "queued", "position": 3, "retry_after": 30}).encode()
    body += b" " * (256 - len(body))  # the 256-byte answer of the report
    store, out = tmp_path / "store", tmp_path / "out"
    try:
        with RangeServer() as srv:
            srv.add_file("model.ckpt", body, content_type="application/json")
            done = _cli(srv.url("model.ckpt"), "--engine", engine, "--to", str(out),
                        "--storage", str(store))
    finally:
        if engine == "aria2":
            _stop_aria2(store)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "instead of model.ckpt" in lines[0], done.stderr
    assert not (out / "model.ckpt").exists()


def test_server_chosen_name_loses_its_right_to_left_override(tmp_path: Path) -> None:
    """``model\\u202egpj.ckpt`` would show as ``modelkpc.jpg`` in every file list."""
    with RangeServer() as srv:
        srv.add_file("dl", os.urandom(4096),
                     content_disposition="attachment; filename*=UTF-8''model%E2%80%AEgpj.ckpt")
        done = _cli(srv.url("dl"), "--engine", "python", "--to", str(tmp_path / "out"),
                    "--storage", str(tmp_path / "store"))
    assert done.returncode == 0, done.stderr
    saved = Path(done.stdout.split("  ")[0])
    assert saved.name == "modelgpj.ckpt" and saved.is_file()
    assert not [p for p in tmp_path.rglob("*") if "\u202e" in p.name]
