"""Cell 5 under papermill: a plain-text usage report; the cleaner runs only when the
CLEAN_LEFTOVERS parameter asks for it, and then only on stale leftovers."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from .test_papermill import _papermill, _text


def _seed(store: Path) -> tuple[Path, Path]:
    stale = store / "checkpoints" / "model.safetensors.part"
    fresh = store / "loras" / "now.safetensors.part"
    for p, age in ((stale, 3600), (fresh, 0)):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"\0" * 123_456)
        os.utime(p, (time.time() - age, time.time() - age))
    (store / "vae").mkdir()
    (store / "vae" / "vae.safetensors").write_bytes(b"v" * 1000)
    return stale, fresh


@pytest.mark.slow
def test_storage_cell_reports_and_cleans_only_when_asked(tmp_path: Path) -> None:
    stale, fresh = _seed(tmp_path / "store")
    nb = _papermill(tmp_path, "storage-report.ipynb")
    text = _text({c["id"]: c for c in nb["cells"]}["cell-storage"])
    assert f"Store {(tmp_path / 'store').resolve()}" in text and "vae" in text
    assert "Download leftovers (.part/.aria2): 2 file(s)" in text and "no clean" in text
    assert stale.exists()

    nb = _papermill(tmp_path, "storage-clean.ipynb", "-p", "CLEAN_LEFTOVERS", "True")
    text = _text({c["id"]: c for c in nb["cells"]}["cell-storage"])
    assert "deleted 1 item(s), freed 120.6 KiB" in text
    assert not stale.exists() and fresh.exists()
