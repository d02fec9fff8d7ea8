"""Notebook host detection (Colab, Kaggle, Lightning, Paperspace, Studio Lab, RunPod,
Vast.ai, local) and where storage, work and persistent data go on each."""

from ._detect import (
    PlatformError,
    PlatformInfo,
    checkout_dir,
    detect_platform,
    platform_names,
    platform_rows,
)

__all__ = [
    "PlatformError",
    "PlatformInfo",
    "checkout_dir",
    "detect_platform",
    "platform_names",
    "platform_rows",
]
