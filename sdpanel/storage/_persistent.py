"""Where the store lives when the platform keeps a folder across sessions.

On Colab (Drive at /content/drive/MyDrive once mounted), Kaggle (/kaggle/working), Lightning
(/teamspace/studios/this_studio), RunPod / Vast.ai (/workspace) and Paperspace (/storage) a
store under that folder survives the session, so models are downloaded once. We choose it
only when the folder exists and we can really write there (an unmounted Drive or a
read-only volume falls back to the platform's scratch store). The store is a sub-folder,
``sdpanel/``, so it never mixes with the user's own files there.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any


def _writable(d: Path) -> bool:
    probe = d / f".sdpanel-write-probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        return False
    return True


def persistent_store_for(platform_info: Any, subdir: str = "sdpanel") -> Path | None:
    """``<persistent_dir>/sdpanel`` when the platform has a persistent folder that exists
    and is writable; None otherwise (use the platform's ``storage_root``)."""
    base = getattr(platform_info, "persistent_dir", None)
    if not base:
        return None
    d = Path(os.fspath(base)).expanduser()
    if not d.is_dir() or not _writable(d):
        return None
    store = d / subdir
    if store.exists() and not (store.is_dir() and _writable(store)):
        return None
    return store
