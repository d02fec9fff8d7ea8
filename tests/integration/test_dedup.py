"""Content index and dedup on a synthetic store with planted duplicates."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from sdpanel.storage import ContentIndex, StorageRoot, _index, dedup, hash_file


def distinct_bytes(base: Path) -> int:
    """What the files really occupy: each inode once, links not followed."""
    seen, total = set(), 0
    for dirpath, dirs, files in os.walk(base):
        if ".sdpanel" in dirs:
            dirs.remove(".sdpanel")  # the index database lives there
        for f in files:
            st = os.lstat(os.path.join(dirpath, f))
            if os.path.islink(os.path.join(dirpath, f)) or (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


@pytest.fixture
def store(tmp_path: Path) -> StorageRoot:
    root = StorageRoot.at(tmp_path / "store").ensure()
    a, b = os.urandom(30_000), os.urandom(50_000)
    put = {
        "checkpoints/a.safetensors": a,
        "loras/a-copy.safetensors": a,
        "other/deep/a-again.bin": a,
        "vae/b.pt": b,
        "vae/b (1).pt": b,
        "upscalers/same-size-other.pth": os.urandom(30_000),  # size collides, content not
        "embeddings/unique.pt": os.urandom(123),
        "embeddings/empty-1.pt": b"",
        "embeddings/empty-2.pt": b"",
    }
    for rel, data in put.items():
        (root.path / rel).parent.mkdir(parents=True, exist_ok=True)
        (root.path / rel).write_bytes(data)
    # An existing hardlink pair is one file already: not a duplicate to collapse.
    (root.path / "sam/h.pth").write_bytes(b"h" * 7000)
    os.link(root.path / "sam/h.pth", root.path / "sam/h-link.pth")
    return root


def test_dedup_saves_exactly_the_planted_duplicate_bytes(store: StorageRoot) -> None:
    planted = 2 * 30_000 + 50_000
    before = distinct_bytes(store.path)
    contents = {p: p.read_bytes() for p in store.path.rglob("*") if p.is_file()
                and ".sdpanel" not in p.parts}

    dry = dedup(store, dry_run=True)
    assert dry.bytes_saved == planted and dry.files_replaced == 3
    assert distinct_bytes(store.path) == before  # a dry run changes nothing

    rep = dedup(store)
    assert not rep.errors
    assert rep.bytes_saved == planted and rep.files_replaced == 3
    assert before - distinct_bytes(store.path) == planted
    for p, data in contents.items():  # every name still reads the same bytes
        assert p.read_bytes() == data
    assert os.path.samefile(store.path / "checkpoints/a.safetensors", store.path / "loras/a-copy.safetensors")
    assert not os.path.samefile(store.path / "embeddings/empty-1.pt", store.path / "embeddings/empty-2.pt")
    assert "saved" in rep.summary()
    assert dedup(store).bytes_saved == 0  # idempotent


def test_index_hashes_match_and_rescan_only_stats(store: StorageRoot,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    idx = ContentIndex(store)
    entries = idx.scan([store.path])
    for e in entries:
        assert e.sha256 == hashlib.sha256(e.path.read_bytes()).hexdigest()
    assert store.state_dir / "index.sqlite" == idx.db_path and idx.db_path.exists()

    calls: list[Path] = []
    real = _index.hash_file

    def counting(path: object, progress: object = None) -> str:
        calls.append(Path(str(path)))
        return real(path, progress)  # type: ignore[arg-type]

    monkeypatch.setattr(_index, "hash_file", counting)
    again = ContentIndex(store).scan([store.path])  # a new instance: the cache is on disk
    assert calls == [] and {e.sha256 for e in again} == {e.sha256 for e in entries}

    target = store.path / "vae/b.pt"
    target.write_bytes(b"changed")
    third = ContentIndex(store).scan([store.path])
    assert calls == [target]
    assert {e.path: e.sha256 for e in third}[target] == hashlib.sha256(b"changed").hexdigest()


def test_collisions_mode_hashes_only_shared_sizes(store: StorageRoot) -> None:
    entries = ContentIndex(store).scan([store.path], hash="collisions")
    hashed = {e.path.name for e in entries if e.sha256}
    assert "unique.pt" not in hashed
    assert {"a.safetensors", "same-size-other.pth", "b.pt"} <= hashed


def test_sha256_and_lookup(store: StorageRoot) -> None:
    idx = ContentIndex(store)
    p = store.path / "checkpoints/a.safetensors"
    digest = idx.sha256(p)
    assert digest == hash_file(p) == hashlib.sha256(p.read_bytes()).hexdigest()
    idx.scan([store.path])
    found = {e.path.name for e in idx.lookup(digest.upper())}
    assert found == {"a.safetensors", "a-copy.safetensors", "a-again.bin"}
    (store.path / "loras/a-copy.safetensors").unlink()
    assert {e.path.name for e in idx.lookup(digest)} == {"a.safetensors", "a-again.bin"}
    assert idx.lookup("0" * 64) == []


def test_without_hardlinks_duplicates_become_relative_symlinks(
        store: StorageRoot, monkeypatch: pytest.MonkeyPatch) -> None:
    data = (store.path / "vae/b.pt").read_bytes()

    def no_hardlinks(*a: object, **k: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_hardlinks)
    before = distinct_bytes(store.path)
    rep = dedup(store)
    assert rep.bytes_saved == 2 * 30_000 + 50_000 == before - distinct_bytes(store.path)
    assert {g.how for g in rep.groups} == {"symlink"}
    dup = store.path / "vae/b (1).pt"
    assert dup.is_symlink() and not os.path.isabs(os.readlink(dup))
    assert dup.read_bytes() == data
