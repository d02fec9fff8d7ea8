"""What the notebook's cells call. Cell code stays a line or two; the logic lives here so
the CLI, the REST API and the panels share it."""

from ._download import DownloadCellError, download, download_summary
from ._generate import GenerateCellError, generate
from ._launch import LaunchCellError, launch
from ._settings_cell import current_settings, is_headless, param_fields, params_from, settings
from ._setup import SetupReport, ToolCheck, ensure_aria2c, prepare, setup
from ._storage import storage, storage_service, store_paths

__all__ = [
    "DownloadCellError",
    "GenerateCellError",
    "LaunchCellError",
    "SetupReport",
    "ToolCheck",
    "current_settings",
    "download",
    "download_summary",
    "ensure_aria2c",
    "generate",
    "is_headless",
    "launch",
    "param_fields",
    "prepare",
    "params_from",
    "settings",
    "setup",
    "storage",
    "storage_service",
    "store_paths",
]
