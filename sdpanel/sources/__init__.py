"""Model sources: CivitAI and Hugging Face clients, link resolution to download specs,
presets, sidecars and the local index of installed models."""

from sdpanel.downloads import set_hash_recheck

from ._bulk import BulkPlan, FilePrefs, all_version_specs, pick_file
from ._civitai import DEFAULT_BASE_URL as CIVITAI_BASE_URL
from ._civitai import PERIODS, SORTS, CivitAIClient, SearchPage
from ._context import ResolveContext
from ._errors import (
    ApiUnavailableError,
    AuthRequiredError,
    LinkError,
    NotFoundError,
    RateLimitedError,
    SourceError,
)
from ._hf import DEFAULT_ENDPOINT as HF_ENDPOINT
from ._hf import HFClient, HFFileInfo, hf_endpoint
from ._hidden import HiddenList
from ._index import MODEL_EXTENSIONS, InstalledModel, LocalIndex, is_model_file
from ._links import (
    civitai_spec,
    guess_kind,
    hf_spec,
    kind_for_civitai_type,
    resolve_link,
    resolve_link_sync,
)
from ._presets import get_preset, preset_spec, presets, validate_presets
from ._sidecars import (
    complete_sidecars,
    find_sidecar,
    preview_path,
    read_sidecar,
    save_preview,
    write_model_sidecar,
)
from ._store_checks import AlreadyHave, find_in_store, link_instead, published_file

# A verified hash that does not match: the downloads layer asks the source again (through
# this hook, as it may not import sources) before calling the file corrupt.
set_hash_recheck(published_file)

__all__ = [
    "AlreadyHave",
    "BulkPlan",
    "CIVITAI_BASE_URL",
    "HF_ENDPOINT",
    "MODEL_EXTENSIONS",
    "PERIODS",
    "SORTS",
    "ApiUnavailableError",
    "AuthRequiredError",
    "CivitAIClient",
    "FilePrefs",
    "HFClient",
    "HFFileInfo",
    "HiddenList",
    "InstalledModel",
    "LinkError",
    "LocalIndex",
    "NotFoundError",
    "RateLimitedError",
    "ResolveContext",
    "SearchPage",
    "SourceError",
    "all_version_specs",
    "civitai_spec",
    "complete_sidecars",
    "find_in_store",
    "find_sidecar",
    "get_preset",
    "guess_kind",
    "hf_endpoint",
    "hf_spec",
    "is_model_file",
    "kind_for_civitai_type",
    "link_instead",
    "pick_file",
    "preset_spec",
    "presets",
    "preview_path",
    "published_file",
    "read_sidecar",
    "resolve_link",
    "resolve_link_sync",
    "save_preview",
    "validate_presets",
    "write_model_sidecar",
]
