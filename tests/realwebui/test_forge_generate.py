"""The real Forge (dfdcbab6) installed through sdpanel from a local git repository, its
repositories in place from the snapshots, launched on CPU with ``--api``, generating with
the random SD1.5 checkpoint through sdpanel's A1111 backend (the CLI). One Forge process
for the module.

Its answers are compared with ``tests/fixtures/recorded/forge-dfdcbab6-api.json``, which
the stub A1111 and the contract tests (``tests/integration/test_a1111_contract.py``) follow;
``SDPANEL_RECORD_FORGE=1`` writes that file again from this server (after moving the pin).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sdpanel.generate._png import decode_png, gradient_png, image_info, read_text
from sdpanel.webuis import installed_info
from tests.fixtures.comfy_live import CKPT, VAE
from tests.fixtures.forge_env import forge_tarball, have_forge_snapshot
from tests.fixtures.forge_live import Forge, git_forge
from tests.fixtures.forge_protocol import RECORDED, load_recorded, post_json, shape, strip_recording

TINY = ("--steps", "2", "--width", "64", "--height", "64", "--cfg", "2", "--sampler", "euler")
RECORD = os.environ.get("SDPANEL_RECORD_FORGE") == "1"
pytestmark = pytest.mark.skipif(not have_forge_snapshot(), reason=f"no Forge snapshot at {forge_tarball()}")


@pytest.fixture(scope="module")
def forge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forge]:
    t0 = time.monotonic()
    with git_forge(tmp_path_factory.mktemp("forge-git")) as f:
        f.extra["install_to_ready_s"] = time.monotonic() - t0
        f.extra["recording"] = {}
        yield f
        if RECORD and f.extra["recording"]:
            rec = strip_recording(f.extra["recording"], f.store.resolve(), f.webui_dir.resolve(), f.base)
            RECORDED.write_text(json.dumps(rec, indent=1) + "\n", encoding="utf-8")


def _call(method: str, url: str, body: Any = None, timeout: float = 1500) -> Any:
    async def go() -> Any:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s, \
                s.request(method, url, json=body) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    return asyncio.run(go())


def generate(forge: Forge, prompt: str, *args: str) -> dict[str, Any]:
    out = forge.cli("generate", prompt, *TINY, "--json", "--timeout", "1500", *args, timeout=1800).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def test_git_install_records_forges_own_version(forge: Forge) -> None:
    info = installed_info(forge.webui_dir)
    assert info and info["method"] == "git" and len(info["commit"]) == 40
    assert info["version"] == "2.0.1v1.10.1"  # modules_forge/forge_version.py, not the commit
    assert "(the webui_python setting)" in forge.install_out
    # The store is linked: Forge's checkpoint folder is the store's.
    link = forge.webui_dir / "models" / "Stable-diffusion"
    assert link.is_symlink() and link.resolve() == (forge.store / "checkpoints").resolve()
    cmdline = forge.record()["cmdline"]
    for flag in ("--api", "--always-cpu", "--skip-torch-cuda-test", "--skip-prepare-environment"):
        assert flag in cmdline


def test_sd_models_lists_the_stores_checkpoint(forge: Forge) -> None:
    models = _call("GET", f"{forge.url}/sdapi/v1/sd-models")
    assert [m["title"].split(" ")[0] for m in models] == [CKPT]
    assert Path(models[0]["filename"]).name == CKPT
    options = _call("GET", f"{forge.url}/sdapi/v1/options")
    forge.extra["recording"].update({"sd-models": models, "options": options})
    if not RECORD:
        rec = load_recorded()
        assert shape(models) == shape(rec["sd-models"])
        assert set(rec["options"]) <= set(options)  # the keys our backend and stub rely on


def test_txt2img_through_the_cli(forge: Forge) -> None:
    t0 = time.monotonic()
    res = generate(forge, "a lighthouse", "--seed", "11")
    forge.extra["first_image_s"] = time.monotonic() - t0
    print(f"\nForge install -> ready {forge.extra['install_to_ready_s']:.0f} s, "
          f"first txt2img {forge.extra['first_image_s']:.0f} s")
    [path] = res["images"]
    data = Path(path).read_bytes()
    info = image_info(data)
    assert (info.format, info.width, info.height) == ("png", 64, 64)
    assert Path(path).resolve().is_relative_to(forge.store.resolve() / "outputs")
    assert "Seed: 11," in read_text(data)["parameters"]


def test_img2img_through_the_cli(forge: Forge, tmp_path: Path) -> None:
    init = tmp_path / "init.png"
    init.write_bytes(gradient_png(64, 64, 3))
    res = generate(forge, "a lighthouse", "--init-image", str(init), "--denoise", "0.6", "--seed", "4")
    [path] = res["images"]
    info = image_info(Path(path).read_bytes())
    assert (info.format, info.width, info.height) == ("png", 64, 64)


def test_raw_api_answers_match_the_recording(forge: Forge) -> None:
    """txt2img and progress as the real server sends them (what the stub must follow)."""
    body = {"prompt": "a lighthouse", "negative_prompt": "", "seed": 5, "sampler_name": "Euler",
            "scheduler": "Automatic", "steps": 3, "cfg_scale": 2, "width": 64, "height": 64,
            "batch_size": 1, "n_iter": 1, "override_settings": {"sd_model_checkpoint": CKPT},
            "send_images": True, "save_images": False}
    idle = _call("GET", f"{forge.url}/sdapi/v1/progress?skip_current_image=false")
    samples: list[dict[str, Any]] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            p = _call("GET", f"{forge.url}/sdapi/v1/progress?skip_current_image=false", timeout=60)
            if (p.get("state") or {}).get("sampling_steps"):
                samples.append(p)
            time.sleep(0.3)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        txt = _call("POST", f"{forge.url}/sdapi/v1/txt2img", body)
    finally:
        stop.set()
        poller.join(70)
    assert len(txt["images"]) == 1
    assert json.loads(txt["info"])["seed"] == 5
    assert samples, "no progress sample showed a running job"
    # An unknown sampler is no error to Forge: it runs its default sampler, in silence
    # (sdpanel validates the name before sending).
    status, bad = post_json(f"{forge.url}/sdapi/v1/txt2img", {**body, "sampler_name": "Nope"})
    rec = {"txt2img": txt, "progress_idle": idle, "progress_running": samples[-1],
           "bad_sampler": {"status": status, "sampler_name": json.loads(bad["info"])["sampler_name"]}}
    forge.extra["recording"].update(rec)
    if not RECORD:
        recorded = load_recorded()
        assert rec["bad_sampler"] == recorded["bad_sampler"]
        for key in ("txt2img", "progress_idle", "progress_running"):
            assert shape(rec[key]) == shape(recorded[key]), key


def test_the_vae_override_reaches_forge(forge: Forge) -> None:
    """Forge ignores sd_vae; through forge_additional_modules the random VAE (other weights
    than the checkpoint's) gives other pixels for the same seed."""
    plain = generate(forge, "a lighthouse", "--seed", "21")
    with_vae = generate(forge, "a lighthouse", "--seed", "21", "--vae", VAE)
    a, b = (decode_png(Path(r["images"][0]).read_bytes(), 64 * 64) for r in (plain, with_vae))
    assert a.rows != b.rows


def test_a_checkpoint_added_after_the_launch_is_used(forge: Forge) -> None:
    new = forge.store / "checkpoints" / "sd15-random-copy.safetensors"
    os.link(forge.store / "checkpoints" / CKPT, new)  # a download finished while Forge runs
    res = generate(forge, "a lighthouse", "--seed", "3", "--checkpoint", new.name)
    assert len(res["images"]) == 1
    titles = [m["title"].split(" ")[0] for m in _call("GET", f"{forge.url}/sdapi/v1/sd-models")]
    assert new.name in titles  # sdpanel refreshed Forge's list, so the override was honoured
