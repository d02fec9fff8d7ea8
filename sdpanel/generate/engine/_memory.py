"""How a model is placed in memory, chosen from the device and its free memory before
loading. A pure function so the table below is tested on any machine.

=======================  ===============================  =====================================
device / free memory     placement                        why
=======================  ===============================  =====================================
CPU (no CUDA / MPS)      float32, all on CPU,             half precision is slow or missing on
                         VAE sliced                       CPUs; slicing bounds the decode's RAM
CUDA, free ≥ 1.5 × need  fp16 (bf16 for Flux), on GPU     room for weights plus activations
CUDA, free ≥ 0.6 × need  fp16, model CPU offload,         one component on the GPU at a time
                         VAE tiled
CUDA, less               fp16, sequential CPU offload,    layer by layer: slow but fits in
                         VAE tiled, attention sliced      ~1–2 GB
MPS                      fp16, on MPS, attention sliced   unified memory: no offload benefit
=======================  ===============================  =====================================

``need`` is the fp16 size of the weights of the family (below), measured from the files.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3
NEED_BYTES = {"sd15": 2.2 * GIB, "sd15-inpaint": 2.2 * GIB, "sdxl": 7.0 * GIB, "flux": 24.0 * GIB}


@dataclass(frozen=True)
class MemoryPlan:
    device: str  # "cpu", "cuda:N", "mps"
    dtype: str  # "float32", "float16", "bfloat16"
    offload: str  # "none", "model", "sequential"
    vae_tiling: bool
    vae_slicing: bool
    attention_slicing: bool
    reason: str

    def describe(self) -> str:
        extras = [n for n, on in (("VAE tiling", self.vae_tiling), ("VAE slicing", self.vae_slicing),
                                  ("attention slicing", self.attention_slicing)) if on]
        offload = {"none": "", "model": ", model CPU offload",
                   "sequential": ", sequential CPU offload"}[self.offload]
        return (f"{self.device} {self.dtype}{offload}" + (f", {', '.join(extras)}" if extras else "")
                + f" ({self.reason})")


def plan_memory(family: str, device: str, free_bytes: int | None) -> MemoryPlan:
    """The placement for ``family`` on ``device`` ("cpu", "mps", "cuda:N") with
    ``free_bytes`` free on it (None when unknown: CPU / MPS)."""
    need = NEED_BYTES.get(family, NEED_BYTES["sdxl"])
    half = "bfloat16" if family == "flux" else "float16"
    if device == "cpu":
        return MemoryPlan("cpu", "float32", "none", False, True, False, "no GPU")
    if device == "mps":
        return MemoryPlan("mps", "float16", "none", False, False, True, "Apple GPU, unified memory")
    free = free_bytes or 0
    free_gib = f"{free / GIB:.1f} GiB free"
    if free >= 1.5 * need:
        return MemoryPlan(device, half, "none", False, False, False, free_gib)
    if free >= 0.6 * need:
        return MemoryPlan(device, half, "model", True, False, False,
                          f"{free_gib}, under 1.5× the {need / GIB:.1f} GiB of weights")
    return MemoryPlan(device, half, "sequential", True, False, True,
                      f"{free_gib}, under 0.6× the {need / GIB:.1f} GiB of weights")
