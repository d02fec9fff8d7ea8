"""The Models tab after CivitAI's domain split: with NSFW on it searches the full catalogue
(civitai.red, here the test server's second port), with it off the SFW host, and a pasted
civitai.red link becomes a card."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sdpanel.panels import Panel
from tests.fixtures.civitai_server import CivitAIServer
from tests.unit.test_models_tab import panel, search, storage

__all__ = ["panel", "storage"]  # fixtures used here (with this module's split server)


@pytest.fixture(scope="module")
def civitai() -> Iterator[CivitAIServer]:
    with CivitAIServer(split_domains=True) as srv:
        yield srv


@pytest.fixture(autouse=True)
def full_catalogue(civitai: CivitAIServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDPANEL_CIVITAI_FULL_CATALOGUE_URL", civitai.red_url)


def test_nsfw_on_searches_the_full_catalogue(panel: Panel, civitai: CivitAIServer) -> None:
    off = search(panel, sub="loras", query="spicy")
    assert off["cards"] == []
    on = search(panel, sub="loras", query="spicy", nsfw=True)
    assert [c["id"] for c in on["cards"]] == [1011] and on["cards"][0]["x"] is True
    red = civitai.extra_ports[0]
    assert any(r.port == red and "nsfw=true" in r.query for r in civitai.requests_to("/api/v1/models"))


def test_a_pasted_civitai_red_link_is_a_card(panel: Panel) -> None:
    page = search(panel, sub="loras", query="https://civitai.red/models/1011", nsfw=True)
    assert [c["id"] for c in page["cards"]] == [1011]
