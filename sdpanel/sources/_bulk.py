"""Every version of a CivitAI model at once, one file per version picked by the user's
preferences (fp16 over fp32, pruned over full), as StabilityMatrix and Civitai Browser
Neo offer. Archived versions (no files) are skipped and named."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sdpanel.downloads import DownloadSpec

from ._context import ResolveContext
from ._errors import LinkError
from ._links import civitai_spec

__all__ = ["BulkPlan", "FilePrefs", "all_version_specs", "pick_file"]

_MODEL_FILE_TYPES = ("Model", "Pruned Model")


@dataclass(frozen=True)
class FilePrefs:
    fp: str | None = "fp16"
    """Preferred precision (fp16, bf16, fp32, fp8 …); None: no preference."""
    size: str | None = "pruned"
    """"pruned" or "full"; None: no preference."""

    @classmethod
    def parse(cls, text: str | None) -> FilePrefs:
        """``"fp16,pruned"`` / ``"fp32,full"`` / ``""`` (no preference)."""
        fp = size = None
        for part in (text or "").replace(" ", "").lower().split(","):
            if part in ("pruned", "full"):
                size = part
            elif part.startswith(("fp", "bf")):
                fp = part
            elif part:
                raise ValueError(f"Unknown file preference {part!r}: use fp16, fp32, bf16, pruned or full.")
        return cls(fp, size)


def pick_file(files: list[dict[str, Any]], prefs: FilePrefs) -> dict[str, Any] | None:
    """The model file that best fits ``prefs`` (precision first, then size); the version's
    primary file breaks ties. VAEs, configs and training data are never picked."""
    models = [f for f in files if f.get("type") in _MODEL_FILE_TYPES] or \
        [f for f in files if f.get("type") not in ("VAE", "Config", "Training Data", "Archive")]

    def score(f: dict[str, Any]) -> tuple[int, int, int]:
        meta = f.get("metadata") or {}
        return (int(bool(prefs.fp) and meta.get("fp") == prefs.fp),
                int(bool(prefs.size) and meta.get("size") == prefs.size),
                int(bool(f.get("primary"))))

    return max(models, key=score) if models else None


@dataclass
class BulkPlan:
    specs: list[DownloadSpec] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """One sentence per version without a file to download."""


async def all_version_specs(ctx: ResolveContext, model_id: int, prefs: FilePrefs,
                            item: dict[str, Any] | None = None) -> BulkPlan:
    model = item if item and item.get("modelVersions") is not None else await ctx.civitai().model(model_id)
    versions = model.get("modelVersions") or []
    if not versions:
        raise LinkError(f"CivitAI model {model.get('name')!r} has no versions to download.")
    plan = BulkPlan()
    for version in versions:
        file = pick_file(list(version.get("files") or []), prefs)
        if file is None:
            plan.skipped.append(f"{version.get('name')}: no model file (archived or empty)")
            continue
        plan.specs.append(civitai_spec(model, version, file, ctx))
    return plan
