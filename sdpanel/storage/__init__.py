"""Storage: the central model store and what works on it."""

from ._root import (
    STATE_DIR,
    InsufficientSpaceError,
    StorageRoot,
    ensure_free_space,
    free_bytes,
    human_bytes,
    kind_ids,
    kinds,
)

__all__ = [
    "STATE_DIR",
    "InsufficientSpaceError",
    "StorageRoot",
    "ensure_free_space",
    "free_bytes",
    "human_bytes",
    "kind_ids",
    "kinds",
]
