"""Generation: a job queue (txt2img, img2img, inpaint) over the running WebUI (ComfyUI or
A1111 / Forge), its REST + SSE API and the Python clients.

The package is callable: ``sdpanel.generate("a cat", checkpoint=...)`` is
:func:`generate`, while ``sdpanel.generate.get_service()`` etc. still work.
"""

import sys as _sys
import types as _types
from typing import Any as _Any

from ._a1111 import A1111Backend
from ._backend import Backend, Reporter
from ._builtin import BuiltinBackend, EngineUnavailable
from ._client import GenerateResult, GenerationFailed, agenerate, cancel, generate
from ._comfyui import ComfyUIBackend
from ._events import EVENT_KINDS, JobEvent, JobEventLog
from ._graph import build_graph
from ._jobs import MODES, BackendError, Job, JobCancelled, JobRequest, LoRA, parameters_text
from ._png import ImageError, read_text
from ._queue import TOPIC, JobNotFound, JobQueue, NoBackendError, QueueFullError
from ._service import GenerateService, discover_backends, get_service, make_backend
from ._validate import ValidationError, validate_request

__all__ = [
    "EVENT_KINDS",
    "MODES",
    "TOPIC",
    "A1111Backend",
    "Backend",
    "BackendError",
    "BuiltinBackend",
    "ComfyUIBackend",
    "EngineUnavailable",
    "GenerateResult",
    "GenerateService",
    "GenerationFailed",
    "ImageError",
    "Job",
    "JobCancelled",
    "JobEvent",
    "JobEventLog",
    "JobNotFound",
    "JobQueue",
    "JobRequest",
    "LoRA",
    "NoBackendError",
    "QueueFullError",
    "Reporter",
    "ValidationError",
    "agenerate",
    "build_graph",
    "cancel",
    "discover_backends",
    "generate",
    "get_service",
    "make_backend",
    "parameters_text",
    "read_text",
    "validate_request",
]


class _CallableModule(_types.ModuleType):
    def __call__(self, prompt: str, **params: _Any) -> GenerateResult:
        return generate(prompt, **params)


_sys.modules[__name__].__class__ = _CallableModule
