"""Services the panels share: one download queue per process and store.

The Models tab sends its selection here and the Downloads tab shows this queue, so both
must reach the same object: :func:`downloads_queue` lazily creates it on the runtime
(``Runtime.service``), configured from the resolved settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sdpanel.runtime import get_runtime

if TYPE_CHECKING:
    from sdpanel.downloads import DownloadQueue, DownloadSpec
    from sdpanel.runtime import Handle
    from sdpanel.storage import StorageRoot


def storage_root() -> StorageRoot:
    """The store the panels work on: the ``storage`` setting, else the platform's root."""
    from sdpanel.platforms import detect_platform
    from sdpanel.storage import StorageRoot

    from ._settings_tab import resolved_settings

    path = resolved_settings().storage or detect_platform().storage_root
    return StorageRoot.at(path).ensure()


def downloads_queue(root: StorageRoot | None = None) -> DownloadQueue:
    """The process's download queue for ``root`` (default: :func:`storage_root`): the one
    :func:`sdpanel.downloads.shared_queue` also gives the notebook cell and the REST API,
    configured (on first use) from the resolved settings and restored from its journal."""
    from sdpanel.downloads import shared_queue

    from ._settings_tab import resolved_settings

    return shared_queue(root or storage_root(), runtime=get_runtime(), settings=resolved_settings())


def send_to_downloads(specs: list[DownloadSpec], root: StorageRoot | None = None) -> Handle[list[str]]:
    """Queue ``specs`` on the shared queue (from any thread); the handle yields their ids."""
    queue = downloads_queue(root)
    return get_runtime().submit(queue.add(specs), name="models-send", topic="downloads")
