"""HFClient against the Hugging Face-compatible test server (tests/fixtures/hf_server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sdpanel.sources import AuthRequiredError, HFClient, NotFoundError, hf_endpoint
from tests.fixtures.hf_server import HFServer


@pytest.fixture(scope="module")
def hf() -> Iterator[HFServer]:
    with HFServer() as s:
        yield s


async def test_head_reads_commit_sha256_size_without_touching_the_cdn(hf: HFServer) -> None:
    before_cdn = len(hf.requests_to("/cdn/"))
    async with HFClient(hf.endpoint, hf.token) as c:
        info = await c.file_info("sdpanel-test/tiny-sd15", "tiny-sd15.safetensors")
    assert info.sha256 == hf.sha256("sdpanel-test/tiny-sd15", "tiny-sd15.safetensors")
    assert info.size == len(hf.payload("sdpanel-test/tiny-sd15", "tiny-sd15.safetensors"))
    assert info.commit == hf.commit("sdpanel-test/tiny-sd15")
    assert info.location and info.location.startswith(hf.cdn_url + "/cdn/")
    assert info.url == f"{hf.endpoint}/sdpanel-test/tiny-sd15/resolve/main/tiny-sd15.safetensors"
    assert len(hf.requests_to("/cdn/")) == before_cdn, "HEAD must not follow to the CDN"
    head = hf.requests_to("/sdpanel-test/tiny-sd15/resolve/")[-1]
    assert head.method == "HEAD" and head.auth == f"Bearer {hf.token}"


async def test_small_file_has_git_etag_not_a_sha256(hf: HFServer) -> None:
    async with HFClient(hf.endpoint) as c:
        info = await c.file_info("sdpanel-test/tiny-sd15", "config.json")
    assert info.sha256 is None and info.size == len(hf.payload("sdpanel-test/tiny-sd15", "config.json"))
    assert info.etag and len(info.etag) == 40 and info.location is None


async def test_gated_repo_errors_name_the_fix(hf: HFServer) -> None:
    repo, path = "sdpanel-test/gated-flux", "flux-tiny.safetensors"
    async with HFClient(hf.endpoint) as anon:
        with pytest.raises(AuthRequiredError, match="HF_TOKEN") as e401:
            await anon.file_info(repo, path)
    assert e401.value.status == 401 and e401.value.code == "GatedRepo"
    async with HFClient(hf.endpoint, hf.token_no_access) as denied:
        with pytest.raises(AuthRequiredError, match="request access on the model page") as e403:
            await denied.file_info(repo, path)
    assert e403.value.status == 403
    assert hf.token_no_access not in str(e403.value)
    async with HFClient(hf.endpoint, hf.token) as granted:
        assert (await granted.file_info(repo, path)).sha256 == hf.sha256(repo, path)


@pytest.mark.parametrize(("repo", "rev", "path", "code"), [
    ("sdpanel-test/nope", "main", "x.safetensors", "RepoNotFound"),
    ("sdpanel-test/tiny-sd15", "v9", "tiny-sd15.safetensors", "RevisionNotFound"),
    ("sdpanel-test/tiny-sd15", "main", "missing.safetensors", "EntryNotFound"),
])
async def test_not_found_kinds(hf: HFServer, repo: str, rev: str, path: str, code: str) -> None:
    async with HFClient(hf.endpoint) as c:
        with pytest.raises(NotFoundError) as err:
            await c.file_info(repo, path, rev)
    assert err.value.code == code and "\n" not in str(err.value)


async def test_tree_lists_sha256_of_lfs_files(hf: HFServer) -> None:
    async with HFClient(hf.endpoint) as c:
        tree = await c.tree("sdpanel-test/tiny-sd15")
        files = {e["path"]: e for e in tree if e["type"] == "file"}
        assert files["vae/tiny-vae.safetensors"]["lfs"]["oid"] == hf.sha256("sdpanel-test/tiny-sd15",
                                                                             "vae/tiny-vae.safetensors")
        assert "lfs" not in files["config.json"]
        top = await c.tree("sdpanel-test/tiny-sd15", recursive=False)
        assert {e["path"] for e in top} == {"config.json", "tiny-sd15.safetensors", "vae"}
        commit = hf.commit("sdpanel-test/tiny-sd15")
        assert len(await c.tree("sdpanel-test/tiny-sd15", commit)) == len(tree)


async def test_dataset_and_rate_limit(hf: HFServer) -> None:
    sleeps: list[float] = []

    async def sleep(s: float) -> None:
        sleeps.append(s)

    async with HFClient(hf.endpoint, sleep=sleep) as c:
        hf.rate_limit(1)
        info = await c.file_info("sdpanel-test/tiny-data", "data.bin", repo_type="dataset")
    assert info.url.startswith(f"{hf.endpoint}/datasets/") and info.sha256 == hf.sha256(
        "sdpanel-test/tiny-data", "data.bin", "dataset")
    assert sleeps == [2.0]


def test_hf_endpoint_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.example:8080/")
    assert hf_endpoint() == "http://mirror.example:8080"
    assert HFClient().resolve_url("a/b", "c d.pt") == "http://mirror.example:8080/a/b/resolve/main/c%20d.pt"
    monkeypatch.delenv("HF_ENDPOINT")
    assert HFClient().endpoint == "https://huggingface.co"
