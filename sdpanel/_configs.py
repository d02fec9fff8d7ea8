"""Where the data in ``configs/`` lives: the checkout's top-level folder when running from
source, ``sdpanel/configs`` inside an installed wheel."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent


@cache
def config_dir() -> Path:
    for candidate in (_HERE / "configs", _HERE.parent / "configs"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("sdpanel's configs/ folder is missing: reinstall sdpanel")


@cache
def load_config(name: str) -> Any:
    """Load ``configs/<name>`` (JSON). Cached: configs are read-only data."""
    return json.loads((config_dir() / name).read_text(encoding="utf-8"))
