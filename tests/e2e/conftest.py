"""Fixtures of the end-to-end suite: the local servers (one set per module) and a fake host
per test whose detached processes are stopped afterwards. The browser test has its own
module-scoped Chromium (see test_browser_five_cells.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ._harness import Host, Servers, fake_platform, local_servers, stop_started


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with local_servers(tmp_path_factory.mktemp("servers")) as srv:
        yield srv


@pytest.fixture
def make_host(tmp_path: Path) -> Iterator[Callable[[str], Host]]:
    """``make_host("runpod")``: a faked host under tmp_path; whatever its runs leave running
    (WebUI, aria2c daemon) is stopped at the end."""
    hosts: list[Host] = []

    def make(name: str) -> Host:
        host = fake_platform(name, tmp_path / name)
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        stop_started(host.storage)
