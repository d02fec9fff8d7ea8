"""ComfyUI sampler / scheduler names → a diffusers scheduler (``configs/engine/samplers.json``).
Imports diffusers: worker process only."""

from __future__ import annotations

import importlib.util
from typing import Any

import diffusers

from sdpanel._configs import load_config


class UnsupportedSampler(ValueError):
    """The built-in engine has no equivalent; the message says what to pick instead."""


def make_scheduler(base: Any, sampler: str, scheduler: str) -> Any:
    """A scheduler of the class ``sampler`` maps to, configured from ``base``'s config with
    ``scheduler``'s spacing / sigma options."""
    table = load_config("engine/samplers.json")
    spec = table["samplers"].get(sampler, "missing")
    if spec == "missing" or spec is None:
        usable = ", ".join(k for k, v in table["samplers"].items() if v)
        raise UnsupportedSampler(f"sampler {sampler!r} has no equivalent in the built-in engine: "
                                 f"pick one of {usable} (or run it in ComfyUI).")
    needs = spec.get("needs")
    if needs and importlib.util.find_spec(needs) is None:
        raise UnsupportedSampler(f"sampler {sampler!r} needs the {needs} package in the engine's "
                                 f"Python: pip install {needs}, or pick another sampler.")
    options = {k: v for k, v in (table["schedulers"].get(scheduler) or {}).items()
               if not k.startswith("$")}
    need_sched = (table["schedulers"].get(scheduler) or {}).get("$needs")
    if need_sched and importlib.util.find_spec(need_sched) is None:
        raise UnsupportedSampler(f"scheduler {scheduler!r} needs the {need_sched} package in the "
                                 f"engine's Python: pip install {need_sched}, or pick another.")
    cls = getattr(diffusers, spec["class"])
    # Only the options this class knows: e.g. DDIM has no Karras sigmas.
    known = set(cls.from_config(base.config).config)
    unknown = [k for k in options if k not in known]
    if unknown:
        raise UnsupportedSampler(f"the {scheduler!r} schedule is not available with sampler "
                                 f"{sampler!r} in the built-in engine: pick 'normal' or another sampler.")
    return cls.from_config(base.config, **spec.get("options", {}), **options)
