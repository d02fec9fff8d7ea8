"""The real-WebUI tier (marker ``realwebui``): the real ComfyUI 0.3.64 installed through
sdpanel, on CPU. The pieces are in ``tests/fixtures/comfy_live.py``; the session's
``comfy`` (one ComfyUI process for every module of the tier) is a package install on the
cached venv. Skipped, with the reason, only where ``../shared/webuis`` is absent; CI has it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.comfy_env import comfyui_tarball, comfyui_venv_python, have_comfyui_snapshot
from tests.fixtures.comfy_live import Comfy, build_comfy_repo, build_comfy_zip, package_comfy


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.realwebui)
            if not have_comfyui_snapshot():
                item.add_marker(pytest.mark.skip(reason=f"no WebUI snapshot at {comfyui_tarball()}"))


@pytest.fixture(scope="session")
def comfy_zip() -> Path:
    return build_comfy_zip()


@pytest.fixture(scope="session")
def comfy_repo() -> Path:
    return build_comfy_repo()


@pytest.fixture(scope="session")
def comfy_python() -> Path:
    return comfyui_venv_python()


@pytest.fixture(scope="session")
def comfy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Comfy]:
    with package_comfy(tmp_path_factory.mktemp("comfy-pkg")) as c:
        yield c
