"""Notebook cell 3 headless (as papermill runs it): the links picked in cell 2 are resolved,
downloaded from the local range server through the process's shared queue, verified, and
summarised one line per file; a failure ends in one clean sentence, not a traceback."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import sdpanel.cells as cells
from sdpanel.cells import DownloadCellError, download
from sdpanel.runtime import get_runtime
from tests.fixtures.range_server import RangeServer


def blob(n: int, seed: int) -> bytes:
    return (hashlib.sha256(str(seed).encode()).digest() * (n // 32 + 1))[:n]


def safetensors(n: int, seed: int) -> bytes:
    """A valid .safetensors file (the queue checks the header of that extension)."""
    header = json.dumps({"t": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + blob(n, seed)


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "store"
    for name in ("SDPANEL_STORAGE", "SDPANEL_PLATFORM", "SDPANEL_HEADLESS", "SDPANEL_DOWNLOAD_ENGINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SDPANEL_STORAGE", str(root))
    monkeypatch.setenv("SDPANEL_PLATFORM", "local")
    monkeypatch.setenv("SDPANEL_HEADLESS", "1")
    monkeypatch.setenv("SDPANEL_DOWNLOAD_ENGINE", "python")  # no detached aria2c left behind
    yield root
    rt = get_runtime()
    name = f"downloads:{root.resolve()}"
    queue = rt._services.pop(name, None) or rt._services.pop(f"downloads:{root}", None)
    if queue is not None:
        rt.submit(queue.close()).wait(30)
    cells._settings_cell._namespace = None


@pytest.fixture
def server() -> Iterator[RangeServer]:
    with RangeServer(rate=4_000_000) as srv:
        yield srv


def test_headless_downloads_verified_and_summarised(store: Path, server: RangeServer,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    files = {"alpha_lora.safetensors": safetensors(3_000_000, 1), "beta_vae.bin": blob(1_200_000, 2)}
    for name, data in files.items():
        server.add_file(name, data)
    links = [server.url(n) for n in files]
    items = download(model_links=links)
    out = capsys.readouterr().out
    assert items is not None and [i["state"] for i in items] == ["done", "done"]
    assert "Downloads: 2 of 2 files downloaded and verified" in out
    for name, data in files.items():
        digest = hashlib.sha256(data).hexdigest()
        line = next(ln for ln in out.splitlines() if name in ln)
        # state, name, size and the verified hash prefix on the file's own line.
        assert line.split()[0] == "done" and f"sha256 {digest[:12]}" in line and "MiB" in line
        [path] = [Path(i["path"]) for i in items if i["name"] == name]
        assert path.read_bytes() == data and path.is_relative_to(store)
        assert not list(path.parent.glob("*.part"))
    # Run the cell again: same names, same content → still one file each, not a second copy.
    again = download(model_links=links)
    assert again is not None and all(i["state"] == "done" for i in again)
    for name in files:
        [path] = [Path(i["path"]) for i in again if i["name"] == name]
        assert sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(".json")) == [name]


def test_headless_failure_is_one_clean_sentence(store: Path, server: RangeServer,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    server.add_file("good.safetensors", safetensors(500_000, 3))
    links = [server.url("good.safetensors"), server.url("missing_model.safetensors")]
    with pytest.raises(DownloadCellError) as info:
        download(model_links=links)
    out = capsys.readouterr().out
    bad = next(ln for ln in out.splitlines() if "missing_model" in ln)
    assert bad.split()[0] == "failed" and "404" in bad  # the reason, on the file's line
    assert "Downloads: 1 of 2 files downloaded and verified" in out
    message = str(info.value)
    assert message.startswith("1 of 2 downloads failed (") and "missing_model" in message
    # IPython/papermill show only this line, no traceback.
    assert info.value._render_traceback_() == [f"DownloadCellError: {message}"]
    assert not (store / "other" / "missing_model.safetensors").exists()


def test_nothing_selected(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert download() is None
    assert "nothing selected" in capsys.readouterr().out


def test_interactive_returns_at_once_and_shows_the_tab(store: Path, server: RangeServer,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from sdpanel.panels import Panel
    from sdpanel.runtime import ErrorEvent, Event, StateEvent

    monkeypatch.setenv("SDPANEL_HEADLESS", "0")
    server.add_file("gamma_lora.safetensors", safetensors(800_000, 4))
    events: list[Event] = []
    unsubscribe = get_runtime().bus.subscribe(events.append, topics={"downloads"})
    try:
        assert download(model_links=[server.url("gamma_lora.safetensors"), "preset:no-such-preset"]) is None
        panel = Panel()  # the shared panel the cell displayed
        try:
            assert panel.active_tab == "downloads"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (
                    any(isinstance(e, StateEvent) and e.state == "done" for e in events)
                    and any(isinstance(e, ErrorEvent) for e in events)):
                time.sleep(0.05)
            [err] = [e for e in events if isinstance(e, ErrorEvent)]
            assert err.key.startswith("resolve:") and "no-such-preset" in err.message
            deadline = time.monotonic() + 30  # the publisher flushes ≤10/s; a loaded machine is slow
            while time.monotonic() < deadline and not (
                    panel.downloads.get("notices") and [r["state"] for r in panel.downloads.get("rows", [])] == ["done"]):
                time.sleep(0.05)
            # The tab shows the file done and the link that could not be queued, as a notice.
            assert [r["name"] for r in panel.downloads["rows"]] == ["gamma_lora.safetensors"]
            assert "not queued" in panel.downloads["notices"][0]["message"]
        finally:
            panel.close()
    finally:
        unsubscribe()
