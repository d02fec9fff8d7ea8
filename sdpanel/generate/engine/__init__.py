"""The built-in inference engine (diffusers). Only ``worker`` and ``_pipelines`` import
torch, and only inside the worker process (``python -m sdpanel.generate.engine.worker``):
the kernel, the Jupyter server and the CLI import the torch-free modules here and talk to
the worker over its stdin / stdout."""

from ._checkpoint import CheckpointError, model_family
from ._memory import MemoryPlan, plan_memory

__all__ = ["CheckpointError", "MemoryPlan", "model_family", "plan_memory"]
