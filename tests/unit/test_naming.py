"""File names from outside data: Content-Disposition parsing, sanitising, collisions."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sdpanel.downloads._naming import (
    MAX_NAME_BYTES,
    filename_from_content_disposition,
    filename_from_url,
    final_name_for,
    sanitize_filename,
)


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ('attachment; filename="model.safetensors"', "model.safetensors"),
        ("attachment; filename=model.safetensors", "model.safetensors"),
        ('attachment; filename="a \\"quoted\\" name.ckpt"', 'a "quoted" name.ckpt'),
        ('attachment; filename="semi;colon.bin"', "semi;colon.bin"),
        # filename* (RFC 8187) wins whichever order they come in.
        ("attachment; filename=\"fallback.bin\"; filename*=UTF-8''mod%C3%A8le%20v2.safetensors",
         "modèle v2.safetensors"),
        ("attachment; filename*=UTF-8''%E2%82%AC.bin; filename=\"eur.bin\"", "€.bin"),
        ("attachment; filename*=iso-8859-1'en'%E9t%E9.pt", "été.pt"),
        ("attachment; FILENAME=\"Upper.bin\"", "Upper.bin"),
        # An unknown charset in filename* falls back to filename.
        ("attachment; filename*=KOI8-R''%C1.bin; filename=\"plain.bin\"", "plain.bin"),
        ('attachment; filename="with%20space.bin"', "with space.bin"),
        ("inline", None),
        ("", None),
        (None, None),
        ('attachment; filename=""', None),
    ],
)
def test_content_disposition(header: str | None, name: str | None) -> None:
    assert filename_from_content_disposition(header) == name


def test_content_disposition_name_is_not_trusted_until_sanitised() -> None:
    raw = filename_from_content_disposition("attachment; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd")
    assert raw == "../../etc/passwd"
    assert sanitize_filename(raw) == "passwd"


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("/abs/path/model.safetensors", "model.safetensors"),
        ("/abs", "abs"),
        ("..\\..\\windows\\system32\\evil.dll", "evil.dll"),
        ("a\x00b.safetensors", "ab.safetensors"),
        ("line\nbreak\r.bin", "linebreak.bin"),
        ("..", "download"),
        (".", "download"),
        ("", "download"),
        (None, "download"),
        ("   ", "download"),
        ("...hidden", "hidden"),
        (" .leading", "leading"),
        ("trailing. . ", "trailing"),
        ('what<>:"|?*.bin', "what_______.bin"),
        ("CON", "_CON"),
        ("nul.txt", "_nul.txt"),
        ("ok name (1).safetensors", "ok name (1).safetensors"),
        ("e\u0301-compose\u0301.pt", "\u00e9-compos\u00e9.pt"),
    ],
)
def test_sanitize(raw: str | None, safe: str) -> None:
    assert sanitize_filename(raw) == safe


def test_sanitize_bounds_length_and_keeps_extension() -> None:
    name = sanitize_filename("x" * 1000 + ".safetensors")
    assert name.endswith(".safetensors")
    assert len(name.encode()) <= MAX_NAME_BYTES
    # Multi-byte characters are never cut in half.
    uni = sanitize_filename("模型" * 200 + ".ckpt")
    assert uni.endswith(".ckpt") and len(uni.encode()) <= MAX_NAME_BYTES
    uni.encode("utf-8").decode("utf-8")
    # An absurd "extension" does not survive at the cost of the name.
    weird = sanitize_filename("a." + "b" * 500)
    assert len(weird.encode()) <= MAX_NAME_BYTES and weird.startswith("a.")


def test_sanitized_names_stay_one_component() -> None:
    for raw in ["a/b", "a\\b", "../x", "x/..", "/", "\\\\server\\share\\f.bin", "C:\\x.bin"]:
        safe = sanitize_filename(raw)
        assert "/" not in safe and "\\" not in safe and safe not in (".", "..")
        assert not safe.startswith(".")


def test_filename_from_url() -> None:
    assert filename_from_url("https://h/x/y/m%20v1.safetensors?sig=1") == "m v1.safetensors"
    assert filename_from_url("https://h/") is None


def _write(p: Path, data: bytes) -> str:
    p.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def test_final_name_free(tmp_path: Path) -> None:
    assert final_name_for(tmp_path, "m.safetensors", "ab" * 32) == (tmp_path / "m.safetensors", False)


def test_final_name_same_hash_is_already_present(tmp_path: Path) -> None:
    sha = _write(tmp_path / "m.safetensors", b"model")
    assert final_name_for(tmp_path, "m.safetensors", sha.upper()) == (tmp_path / "m.safetensors", True)


def test_final_name_other_content_gets_distinct_name(tmp_path: Path) -> None:
    _write(tmp_path / "m.safetensors", b"one")
    sha2 = hashlib.sha256(b"two").hexdigest()
    path, present = final_name_for(tmp_path, "m.safetensors", sha2)
    assert (path, present) == (tmp_path / "m (2).safetensors", False)
    _write(path, b"two")
    # Next time the same content is found under its numbered name.
    assert final_name_for(tmp_path, "m.safetensors", sha2) == (path, True)
    sha3 = hashlib.sha256(b"three").hexdigest()
    assert final_name_for(tmp_path, "m.safetensors", sha3, size=5)[0] == tmp_path / "m (3).safetensors"


def test_final_name_without_hash_never_reuses(tmp_path: Path) -> None:
    _write(tmp_path / "m.bin", b"x")
    assert final_name_for(tmp_path, "m.bin", None) == (tmp_path / "m (2).bin", False)


def test_final_name_sanitises_hostile_names(tmp_path: Path) -> None:
    path, _ = final_name_for(tmp_path, "../../etc/passwd", None)
    assert path == tmp_path / "passwd"
