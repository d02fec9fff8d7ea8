"""A model's kind (and base model) from its safetensors header, for every kind the store
files apart; header-only files are enough because only the header is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdpanel.sources._links import guess_kind
from sdpanel.sources._model_kind import header_from_bytes, kind_from_header, read_local_header
from sdpanel.storage import kind_ids
from tests.fixtures.safetensors_kinds import HEADERS, header_only


@pytest.mark.parametrize("name", sorted(HEADERS))
def test_kind_and_base_from_a_header_only_file(name: str, tmp_path: Path) -> None:
    kind, base, tensors = HEADERS[name]
    path = tmp_path / "model.safetensors"  # the name says nothing: the header must
    path.write_bytes(header_only(tensors))
    assert guess_kind(path.name) == "other"
    header = read_local_header(path)
    assert header is not None
    found = kind_from_header(header)
    assert found is not None, name
    assert (found.kind, found.base_model) == (kind, base), found.reason
    assert found.kind in kind_ids()


def test_unknown_or_broken_headers_keep_the_name_guess() -> None:
    assert kind_from_header({"__metadata__": {}, "foo.weight": {"shape": [1], "dtype": "F16"}}) is None
    assert kind_from_header({}) is None
    assert header_from_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{") is None
    assert header_from_bytes(b"<!DOCTYPE html><html>") is None
