"""Storage: the central model store and what works on it."""

from ._cleaner import CleanItem, CleanPlan, CleanResult, apply_clean, plan_clean
from ._dedup import DedupGroup, DedupReport, dedup
from ._fsops import MoveError, Placed
from ._index import ContentIndex, Entry, hash_file, walk_files
from ._links import LinkReport, link_webui, unlink_webui
from ._manifest import all_manifests, linked_kinds
from ._persistent import persistent_store_for
from ._root import (
    STATE_DIR,
    InsufficientSpaceError,
    StorageRoot,
    ensure_free_space,
    free_bytes,
    human_bytes,
    kind_ids,
    kinds,
    reserve_bytes,
)
from ._service import StorageService
from ._usage import ModelUsage, UsageReport, cache_dirs, format_report, usage_report
from ._webuis import (
    normalize_webui,
    webui_folders,
    webui_ids,
    webui_label,
    webui_link_method,
)

__all__ = [
    "STATE_DIR",
    "CleanItem",
    "CleanPlan",
    "CleanResult",
    "ContentIndex",
    "DedupGroup",
    "DedupReport",
    "Entry",
    "InsufficientSpaceError",
    "LinkReport",
    "ModelUsage",
    "MoveError",
    "Placed",
    "StorageRoot",
    "StorageService",
    "UsageReport",
    "all_manifests",
    "apply_clean",
    "cache_dirs",
    "dedup",
    "ensure_free_space",
    "format_report",
    "free_bytes",
    "hash_file",
    "human_bytes",
    "kind_ids",
    "kinds",
    "link_webui",
    "linked_kinds",
    "normalize_webui",
    "reserve_bytes",
    "persistent_store_for",
    "plan_clean",
    "unlink_webui",
    "usage_report",
    "walk_files",
    "webui_folders",
    "webui_ids",
    "webui_label",
    "webui_link_method",
]
