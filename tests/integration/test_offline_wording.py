"""Offline, every part says the same thing: "no network / cannot resolve <host>" with the
fix, never a library's internals ("ssl:default [Name or service not known]", "Cannot
connect to host"). Hosts under ``.invalid`` never resolve (RFC 2606), with or without a
network, so these run the real resolver, real aiohttp and real git.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sdpanel.downloads._engine import Transfer
from sdpanel.downloads._errors import DownloadError
from sdpanel.downloads._python_engine import PythonEngine
from sdpanel.sources import ApiUnavailableError, CivitAIClient
from sdpanel.webuis import StepError, install_git
from sdpanel.webuis._install import InstallError, install_package

INTERNALS = ("ssl:default", "Name or service not known", "Cannot connect to host", "gaierror",
             "ClientConnector", "Errno")


def _clean(message: str) -> None:
    for word in INTERNALS:
        assert word not in message, f"library internals in {message!r}"


async def test_search_offline_names_the_host_and_the_fix() -> None:
    async with CivitAIClient("https://civitai.invalid") as client:
        with pytest.raises(ApiUnavailableError) as err:
            await client.search("cats")
    message = str(err.value)
    assert message == ("CivitAI is unreachable: no network / cannot resolve civitai.invalid; "
                       "check the network connection (or the configured base URL), then retry.")
    _clean(message)


async def test_download_offline_names_the_host_and_the_fix(tmp_path: Path) -> None:
    t = Transfer(url="https://huggingface.invalid/a/b/resolve/main/x.safetensors", headers={},
                 part_path=tmp_path / "x.part", size=10, sha256=None)
    eng = PythonEngine(max_tries=1, backoff=0.01)
    with pytest.raises(DownloadError) as err:
        await eng.fetch(t, lambda *_: None, lambda: None)
    await eng.close()
    assert err.value.reason == "unreachable"
    assert "no network / cannot resolve huggingface.invalid" in err.value.message
    assert "check the network connection" in err.value.message
    _clean(err.value.message)


async def test_package_install_offline_names_the_host_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(InstallError) as err:
        await install_package("https://packages.invalid/ComfyUI.zip", tmp_path / "comfyui", webui="comfyui")
    assert "no network / cannot resolve packages.invalid; check the network connection" in str(err.value)
    _clean(str(err.value))


async def test_git_install_offline_says_why_in_its_first_line(tmp_path: Path) -> None:
    """The first line is what panels and the CLI show first: cause and fix, then git's
    own last lines (where "Could not resolve host" was, and the only place it was)."""
    with pytest.raises(StepError) as err:
        await install_git("https://github.invalid/comfyanonymous/ComfyUI", tmp_path / "comfyui",
                          webui="comfyui", venv=False)
    first, *rest = str(err.value).splitlines()
    assert first == ("git fetch failed (exit 128): no network / cannot resolve github.invalid; "
                     "check the network connection (or the host name), then retry.")
    assert rest[0] == "Last output:" and any("Could not resolve host: github.invalid" in x for x in rest)
