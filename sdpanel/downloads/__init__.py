"""Downloads: the byte movers (aria2c daemon, pure-Python engine), redirect resolution with
tokens on the API host only, verification and naming, and the journalled queue.

Typical use (from a cell or the CLI)::

    from sdpanel.downloads import DownloadQueue, DownloadSpec
    q = DownloadQueue(storage_root, rt.bus, max_concurrent=3, engine="auto")
    ids = await q.add([DownloadSpec(url, kind="loras", sha256=...)])
    items = await q.wait_all()
"""

from ._aria2 import Aria2Client, Aria2Daemon, Aria2RpcError, Aria2Unavailable, aria2_available
from ._aria2_engine import Aria2Engine, aria2_error
from ._engine import Engine, ProgressFn, Transfer, TransferResult
from ._errors import REASONS, DownloadError, http_error
from ._finish import set_hash_recheck, sidecar_path, write_sidecar
from ._item import FINISHED, STATES, DownloadItem
from ._journal import Journal, JournalBusy
from ._naming import filename_from_content_disposition, sanitize_filename
from ._python_engine import PythonEngine
from ._queue import TOPIC, DownloadQueue, pick_engine
from ._resolve import SOURCE_TOKENS, Resolved, detect_source, resolve
from ._service import shared_queue, summarize
from ._spec import DownloadSpec, origin

__all__ = [
    "FINISHED",
    "REASONS",
    "SOURCE_TOKENS",
    "STATES",
    "TOPIC",
    "Aria2Client",
    "Aria2Daemon",
    "Aria2Engine",
    "Aria2RpcError",
    "Aria2Unavailable",
    "DownloadError",
    "DownloadItem",
    "DownloadQueue",
    "DownloadSpec",
    "Engine",
    "Journal",
    "JournalBusy",
    "ProgressFn",
    "PythonEngine",
    "Resolved",
    "Transfer",
    "TransferResult",
    "aria2_available",
    "aria2_error",
    "detect_source",
    "filename_from_content_disposition",
    "http_error",
    "origin",
    "pick_engine",
    "resolve",
    "sanitize_filename",
    "set_hash_recheck",
    "shared_queue",
    "sidecar_path",
    "summarize",
    "write_sidecar",
]
