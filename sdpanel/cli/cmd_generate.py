"""``sdpanel generate PROMPT ...``: one generation job through the running WebUI (or the
one at ``--backend-url``, or the built-in engine: ``--flavour builtin``, the default when
no WebUI runs); prints progress, saves the PNGs (parameters embedded) in the store's
outputs folder and copies them to ``--out``."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

FIELDS = ("mode", "negative_prompt", "checkpoint", "vae", "sampler", "scheduler", "steps", "cfg",
          "seed", "width", "height", "batch_size", "batch_count", "denoise", "init_image", "mask",
          "mask_blur", "inpaint_area", "priority")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("generate", help="generate images (txt2img, img2img, inpaint)",
                              description=__doc__)
    p.add_argument("prompt", help="what to generate")
    p.add_argument("-n", "--negative-prompt", dest="negative_prompt", default=None)
    p.add_argument("--mode", choices=("txt2img", "img2img", "inpaint"), default=None)
    p.add_argument("--checkpoint", help="file in the store's checkpoints folder "
                   "(default: the only one there)")
    p.add_argument("--vae")
    p.add_argument("--lora", action="append", default=[], metavar="NAME[:WEIGHT]",
                   help="a LoRA from the store, repeatable (e.g. style.safetensors:0.8)")
    p.add_argument("--sampler")
    p.add_argument("--scheduler")
    p.add_argument("--steps", type=int)
    p.add_argument("--cfg", type=float)
    p.add_argument("--seed", type=int, help="-1 (default) for a random seed")
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--batch-size", dest="batch_size", type=int)
    p.add_argument("--batch-count", dest="batch_count", type=int)
    p.add_argument("--init-image", dest="init_image", type=Path, help="img2img / inpaint input")
    p.add_argument("--denoise", type=float)
    p.add_argument("--mask", type=Path, help="inpaint mask PNG (white = repaint)")
    p.add_argument("--mask-blur", dest="mask_blur", type=int)
    p.add_argument("--inpaint-area", dest="inpaint_area", choices=("whole", "only_masked"))
    p.add_argument("--priority", type=int)
    p.add_argument("--backend-url", help="WebUI to use (default: the running one sdpanel started)")
    p.add_argument("--flavour", choices=("comfyui", "a1111", "builtin"), default="comfyui",
                   help="API of --backend-url (a1111 also covers Forge, ReForge, SD.Next); "
                   "builtin: sdpanel's own engine, no WebUI (the default when none runs)")
    p.add_argument("--storage", metavar="PATH", help="storage root (default: detected)")
    p.add_argument("--out", type=Path, metavar="DIR", help="also copy the images here")
    p.add_argument("--timeout", type=float, default=None, help="give up waiting after SECONDS")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def _params(args: argparse.Namespace, checkpoints: list[str]) -> dict[str, Any]:
    params = {k: getattr(args, k) for k in FIELDS if getattr(args, k, None) is not None}
    if args.lora:
        params["loras"] = args.lora
    if "checkpoint" not in params and len(checkpoints) == 1:
        params["checkpoint"] = checkpoints[0]
    if "init_image" in params and "mode" not in params:
        params["mode"] = "inpaint" if "mask" in params else "img2img"
    return params


def run(args: argparse.Namespace) -> int:
    from sdpanel.generate import (
        EngineUnavailable,
        GenerationFailed,
        NoBackendError,
        ValidationError,
        generate,
        get_service,
    )

    service = get_service(args.storage)
    folder = service.storage.kind_dir("checkpoints")
    checkpoints = sorted(p.name for p in folder.glob("*.safetensors")) if folder.is_dir() else []
    quiet = args.json

    def show(event: Any) -> None:
        if quiet:
            return
        if event.kind == "progress":
            print(f"\r  step {event.data['step']}/{event.data['steps']}", end="", file=sys.stderr, flush=True)
        elif event.kind in ("queued", "running"):
            extra = f" on {event.data['backend']}" if event.kind == "running" else ""
            print(f"{event.kind}{extra} (seed {event.data.get('seed')})", file=sys.stderr)
        elif event.kind in ("done", "error"):
            print("", file=sys.stderr)

    try:
        result = generate(args.prompt, backend_url=args.backend_url, flavour=args.flavour,
                          storage=service.storage, timeout=args.timeout, on_event=show,
                          **_params(args, checkpoints))
    except ValidationError as exc:
        print("error: the request is not valid:", file=sys.stderr)
        for field, message in exc.errors.items():
            print(f"  --{field.replace('_', '-')}: {message}", file=sys.stderr)
        return 2
    except (GenerationFailed, NoBackendError, EngineUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    paths = list(result.images)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        paths = [Path(shutil.copy2(p, args.out / p.name)) for p in result.images]
    if args.json:
        print(json.dumps({"job": result.job_id, "seed": result.seed,
                          "images": [str(p) for p in paths], "seeds": result.seeds}))
    else:
        for path, seed in zip(paths, result.seeds, strict=True):
            print(f"{path}  (seed {seed})")
    return 0
