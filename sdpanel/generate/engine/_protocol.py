"""The worker's wire format: one JSON object per line on its stdin (requests) and on a
private copy of its stdout (events); images travel base64-encoded. No torch here."""

from __future__ import annotations

import base64
import json
from typing import Any

# Requests (kernel → worker): {"op": "run", "id", "request", "init_image", "mask"},
# {"op": "cancel", "id"}, {"op": "unload"}, {"op": "shutdown"}.
# Events (worker → kernel): {"ev": "ready", "device", "versions"}, {"ev": "progress", "id",
# "step", "steps"}, {"ev": "preview", "id", "png"}, {"ev": "done", "id", "images": [png...],
# "plan"}, {"ev": "error", "id", "message"}, {"ev": "cancelled", "id", "step"},
# {"ev": "unloaded", "freed"}.
LINE_LIMIT = 256 * 1024**2  # a batch of 8 large PNGs in one line


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, separators=(",", ":")) + "\n").encode()


def decode(line: bytes) -> dict[str, Any] | None:
    """The message on ``line``, None for anything that is not one (stray output)."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)
