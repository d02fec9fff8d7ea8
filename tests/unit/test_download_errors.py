"""HTTP failures mapped to reasons and messages users understand (cause and fix)."""

from __future__ import annotations

import errno

import pytest

from sdpanel.downloads._errors import (
    REASONS,
    DownloadError,
    disk_error,
    http_error,
    unreachable_error,
)

CIVITAI = "https://civitai.com/api/download/models/1"


@pytest.mark.parametrize(
    ("status", "body", "headers", "source", "reason", "words"),
    [
        (401, '{"error":"Unauthorized","message":"The creator of this asset requires you to be '
              'logged in to download it"}', {}, "civitai", "auth", ["CIVITAI_TOKEN", "Settings"]),
        (401, '{"error":"Unauthorized","message":"The creator has disabled downloads on this '
              'file"}', {}, "civitai", "forbidden", ["disabled"]),
        (403, '{"error":"Early Access","deadline":"2026-12-01"}', {}, "civitai", "early_access",
         ["Early Access", "2026-12-01"]),
        (403, '{"error":"You do not have access to download this file"}', {}, "civitai",
         "forbidden", ["CIVITAI_TOKEN"]),
        (404, '{"error":"File not found"}', {}, "civitai", "not_found", ["404"]),
        (410, "", {}, "civitai", "gone", ["archived"]),
        (429, "", {"Retry-After": "7"}, "civitai", "rate_limited", ["7 s"]),
        (503, "", {}, "url", "server_error", ["retried"]),
        (401, "", {"X-Error-Code": "GatedRepo"}, "huggingface", "auth", ["HF_TOKEN", "terms"]),
        (403, "", {"x-error-code": "GatedRepo"}, "huggingface", "forbidden", ["request access"]),
        (401, "", {"X-Error-Code": "RepoNotFound"}, "huggingface", "not_found", ["HF_TOKEN"]),
        (404, "", {"X-Error-Code": "EntryNotFound"}, "huggingface", "not_found", ["file"]),
        (401, "", {}, "url", "auth", ["401"]),
    ],
)
def test_http_error_mapping(status: int, body: str, headers: dict[str, str], source: str,
                            reason: str, words: list[str]) -> None:
    err = http_error(status, CIVITAI, body, headers, source)
    assert isinstance(err, DownloadError) and err.reason == reason and err.status == status
    for w in words:
        assert w in err.message, err.message


def test_retryable_and_resumable_flags() -> None:
    assert http_error(503, CIVITAI).retryable and http_error(429, CIVITAI).retryable
    assert not http_error(404, CIVITAI).retryable and not http_error(404, CIVITAI).resumable
    assert http_error(429, CIVITAI, headers={"Retry-After": "3"}).retry_after == 3.0
    assert DownloadError("checksum", "x").resumable is False
    assert DownloadError("truncated", "x").resumable is True
    with pytest.raises(ValueError):
        DownloadError("nonsense", "x")
    assert len(REASONS) == 16


def test_messages_never_carry_tokens() -> None:
    err = http_error(404, "https://host/file?token=SECRET123&x=1", "", {})
    assert "SECRET123" not in err.message
    err = DownloadError("auth", "sent Bearer abcdef123456 to https://h/?sig=zzz")
    assert "abcdef123456" not in str(err) and "zzz" not in str(err)


def test_network_and_disk_errors() -> None:
    u = unreachable_error("http://10.0.0.1:9/x", ConnectionRefusedError("refused"))
    assert u.reason == "unreachable" and u.retryable and "10.0.0.1" in u.message
    d = disk_error(OSError(errno.ENOSPC, "No space left"), "/store/m.part")
    assert d.reason == "disk_full" and "free some space" in d.message and d.resumable
