"""``POST /jobs`` with a body nested 100,000 levels deep answered 500 (a RecursionError
traceback); it is the client's mistake: 400 with one sentence (issue 17, item 9)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.server.conftest import *  # noqa: F403 - pytest-jupyter's server fixtures


@pytest.fixture
def jp_server_config(storage: Path) -> dict[str, object]:
    return {"ServerApp": {"jpserver_extensions": {"sdpanel.server": True}}}


@pytest.mark.parametrize("body", ["[" * 100_000 + "]" * 100_000,
                                  '{"prompt": ' + "{\"a\": " * 50_000 + "1" + "}" * 50_001])
def test_deeply_nested_json_body_is_a_400_with_one_sentence(body: str, jp_fetch, run) -> None:  # type: ignore[no-untyped-def]
    r = run(jp_fetch("sdpanel", "api", "jobs", method="POST", body=body, raise_error=False))
    assert r.code == 400
    message = json.loads(r.body)["message"]
    assert message == "body nests JSON too deeply: send a job as one flat JSON object"
