"""Verification of finished part files before they may take a model's real name."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest

from sdpanel.downloads._errors import DownloadError
from sdpanel.downloads._verify import (
    file_sha256,
    looks_like_error_page,
    safetensors_header,
    verify_file,
)


def safetensors_bytes(tensors: dict[str, tuple[str, list[int], int]] | None = None,
                      header_override: bytes | None = None, extra: bytes = b"") -> bytes:
    tensors = tensors or {"w": ("F32", [2, 2], 16), "b": ("F16", [2], 4)}
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    data = b""
    for name, (dtype, shape, nbytes) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + nbytes]}
        data += bytes(range(nbytes % 256)) + b"\0" * (nbytes - nbytes % 256)
    raw = header_override if header_override is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data + extra


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_good_safetensors_passes_and_returns_digest(tmp_path: Path) -> None:
    data = safetensors_bytes()
    p = write(tmp_path, "m.safetensors.part", data)
    sha = hashlib.sha256(data).hexdigest()
    assert verify_file(p, len(data), sha.upper(), "m.safetensors") == sha
    assert set(safetensors_header(p)) == {"__metadata__", "w", "b"}


def test_computed_digest_is_trusted_instead_of_rereading(tmp_path: Path) -> None:
    p = write(tmp_path, "x.bin", b"abc")
    with pytest.raises(DownloadError) as ei:
        verify_file(p, 3, hashlib.sha256(b"abc").hexdigest(), computed_sha256="00" * 32)
    assert ei.value.reason == "checksum"


def test_checksum_mismatch(tmp_path: Path) -> None:
    p = write(tmp_path, "x.ckpt", b"PK\x03\x04 pickled zip")
    with pytest.raises(DownloadError) as ei:
        verify_file(p, None, "ab" * 32, "x.ckpt")
    assert ei.value.reason == "checksum" and not ei.value.resumable
    assert "download it again" in ei.value.message


def test_size_mismatch(tmp_path: Path) -> None:
    p = write(tmp_path, "x.bin", b"\x00" * 10)
    with pytest.raises(DownloadError) as ei:
        verify_file(p, 11, None)
    assert ei.value.reason == "size_mismatch" and "10 bytes but should be 11" in ei.value.message


@pytest.mark.parametrize(
    "page",
    [
        b"<!DOCTYPE html><html><body>Log in</body></html>",
        b"\n\n  <html lang=en><head>",
        b"\xef\xbb\xbf<!doctype html>",
        b'{"error":"Unauthorized","message":"log in"}',
        b'{\n  "error": "Early Access"\n}',
        b'<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>',
    ],
)
def test_error_page_served_as_model(tmp_path: Path, page: bytes) -> None:
    p = write(tmp_path, "m.safetensors.part", page)
    with pytest.raises(DownloadError) as ei:
        verify_file(p, 7_000_000, None, "m.safetensors")
    assert ei.value.reason == "html_instead_of_model"  # named before the size mismatch
    assert "token" in ei.value.message


def test_json_document_is_an_error_page_whatever_the_content_type(tmp_path: Path) -> None:
    """The verdict is the bytes' alone: aria2 reports no Content-Type, and the Python
    engine's verdict on the same bytes must be the same."""
    for ct in ("application/json; charset=utf-8", "application/octet-stream", None):
        assert looks_like_error_page(b'{"ok": false}', ct)
    p = write(tmp_path, "m.bin", b'{"ok": false}')
    with pytest.raises(DownloadError) as ei:
        verify_file(p, None, None, "m.bin")
    assert ei.value.reason == "html_instead_of_model"


def test_binary_starting_with_a_brace_is_not_an_error_page(tmp_path: Path) -> None:
    """A safetensors header of 0x227b bytes starts ``{"``: not JSON, still a model."""
    assert not looks_like_error_page(b'{"\x00\x00\x00\x00\x00\x00\x01\x02')


def test_real_text_files_are_not_error_pages(tmp_path: Path) -> None:
    p = write(tmp_path, "config.json", b'{"error_rate": 0.1}')
    assert verify_file(p, None, None, "config.json") == hashlib.sha256(b'{"error_rate": 0.1}').hexdigest()
    assert not looks_like_error_page(b"GGUF\x03\x00\x00\x00")
    # A safetensors header starts with its length, never with "{" at offset 0.
    assert not looks_like_error_page(safetensors_bytes()[:64])


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x01\x02", "shorter than"),
        (struct.pack("<Q", 10**12) + b"{}", "does not fit"),
        (struct.pack("<Q", 50) + b"{}", "does not fit"),
        (struct.pack("<Q", 0), "does not fit"),
        (safetensors_bytes(header_override=b"not json at all"), "not JSON"),
        (safetensors_bytes(header_override=b"[1, 2, 3]"), "not a JSON object"),
        (safetensors_bytes(header_override=b'{"w": {"dtype": "F32", "shape": [1], '
                                            b'"data_offsets": [0, 999999]}}'), "outside"),
        (safetensors_bytes(header_override=b'{"w": {"dtype": "F32", "shape": [1], '
                                            b'"data_offsets": [-4, 0]}}'), "outside"),
        (safetensors_bytes(header_override=b'{"w": {"shape": [1], "data_offsets": [0, 0]}}'),
         "dtype"),
        (safetensors_bytes(header_override=b'{"__metadata__": [1]}'), "__metadata__"),
        (safetensors_bytes(header_override=b'\xff\xfe{"w": 1}'), "not JSON"),
    ],
)
def test_bad_safetensors(tmp_path: Path, data: bytes, why: str) -> None:
    p = write(tmp_path, "m.safetensors.part", data)
    with pytest.raises(DownloadError) as ei:
        verify_file(p, None, None, "m.safetensors")
    assert ei.value.reason == "bad_safetensors" and why in ei.value.message


def test_truncated_safetensors_data_is_caught(tmp_path: Path) -> None:
    data = safetensors_bytes({"w": ("F32", [1000], 4000)})
    p = write(tmp_path, "m.safetensors", data[:-100])
    with pytest.raises(DownloadError) as ei:
        verify_file(p, None, None)
    assert ei.value.reason == "bad_safetensors"


def test_file_sha256_reads_large_files_in_blocks(tmp_path: Path) -> None:
    data = b"x" * (5 * 1024 * 1024 + 3)
    p = write(tmp_path, "big", data)
    assert file_sha256(p, block=1 << 20) == hashlib.sha256(data).hexdigest()
