"""Content index: sha256 of files, cached in SQLite under ``<store>/.sdpanel/index.sqlite``.

This is the project's one implementation of file hashing (downloads verification, the
models' local index, dedup and the cleaner all come here).

- sha256 because it is what CivitAI and Hugging Face publish.
- A cached hash is keyed by (device, inode, size, mtime_ns): a rescan of unchanged files only
  ``lstat``s them, and hardlinks share one entry. A rewritten file gets a new mtime, so a
  stale hash is never served.
- Reads are 1 MiB ``readinto`` calls into one buffer; hashlib releases the GIL on large
  updates, so a small thread pool hashes many files in parallel.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ._root import STATE_DIR, StorageRoot

CHUNK = 1024 * 1024
Key = tuple[int, int, int, int]  # (dev, ino, size, mtime_ns)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hashes (
  dev INTEGER, ino INTEGER, size INTEGER, mtime_ns INTEGER, sha256 TEXT NOT NULL,
  PRIMARY KEY (dev, ino, size, mtime_ns));
CREATE INDEX IF NOT EXISTS hashes_sha ON hashes (sha256);
CREATE TABLE IF NOT EXISTS paths (
  path TEXT PRIMARY KEY, dev INTEGER, ino INTEGER, size INTEGER, mtime_ns INTEGER);
"""


@dataclass(frozen=True)
class Entry:
    """One regular file as seen by a scan. ``sha256`` is None when it was not hashed."""

    path: Path
    size: int
    mtime_ns: int
    dev: int
    ino: int
    nlink: int
    sha256: str | None = None

    @property
    def key(self) -> Key:
        return (self.dev, self.ino, self.size, self.mtime_ns)


def hash_file(path: str | os.PathLike[str], progress: Callable[[int], None] | None = None) -> str:
    """sha256 hex digest of a file's content (1 MiB reads into one reused buffer)."""
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
            if progress is not None:
                progress(n)
    return h.hexdigest()


def _entry(path: str, st: os.stat_result, sha: str | None = None) -> Entry:
    return Entry(Path(path), st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, st.st_nlink, sha)


def walk_files(roots: Iterable[str | os.PathLike[str]], errors: list[str] | None = None,
               skip_names: frozenset[str] = frozenset({STATE_DIR})) -> Iterator[Entry]:
    """Regular files under ``roots`` (files or folders). Symlinks are never followed, so
    loops and links out of a tree cannot lead a scan elsewhere. Unreadable folders are
    reported in ``errors`` and skipped."""
    stack: list[str] = []
    for root in roots:
        r = os.fspath(root)
        try:
            st = os.lstat(r)
        except OSError as e:
            if errors is not None:
                errors.append(f"{r}: {e.strerror or e}")
            continue
        if os.path.isdir(r) and not os.path.islink(r):
            stack.append(r)
        elif not os.path.islink(r) and os.path.isfile(r):
            yield _entry(r, st)
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                items = list(it)
        except OSError as e:
            if errors is not None:
                errors.append(f"{d}: cannot list ({e.strerror or e})")
            continue
        for de in items:
            try:
                if de.is_dir(follow_symlinks=False):
                    if de.name not in skip_names:
                        stack.append(de.path)
                elif de.is_file(follow_symlinks=False):
                    yield _entry(de.path, de.stat(follow_symlinks=False))
            except OSError as e:  # vanished between listing and stat
                if errors is not None:
                    errors.append(f"{de.path}: {e.strerror or e}")


class ContentIndex:
    """``ContentIndex(storage_root).sha256(path)``, ``.scan(paths)``, ``.lookup(sha256)``."""

    def __init__(self, storage_root: StorageRoot | str | os.PathLike[str],
                 workers: int | None = None) -> None:
        self.root = storage_root if isinstance(storage_root, StorageRoot) else StorageRoot.at(storage_root)
        self.db_path = self.root.state_path("index.sqlite")
        self.workers = workers or min(8, max(2, os.cpu_count() or 2))
        self.errors: list[str] = []
        self._lock = threading.Lock()
        with self._db() as db:
            db.executescript(_SCHEMA)

    def _db(self) -> sqlite3.Connection:
        # The default rollback journal, not WAL: WAL needs shared memory, which network and
        # FUSE file systems (a store on Google Drive) do not offer.
        db = sqlite3.connect(self.db_path, timeout=30)
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    # -- single file ---------------------------------------------------------------------------
    def sha256(self, path: str | os.PathLike[str]) -> str:
        """sha256 of ``path`` (symlinks followed), from the cache when the file is unchanged."""
        p = os.fspath(path)
        st = os.stat(p)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with self._db() as db:
            row = db.execute("SELECT sha256 FROM hashes WHERE dev=? AND ino=? AND size=? AND "
                             "mtime_ns=?", key).fetchone()
        if row:
            return str(row[0])
        sha = hash_file(p)
        if self._unchanged(p, key, follow=True):
            with self._db() as db:
                db.execute("INSERT OR REPLACE INTO hashes VALUES (?,?,?,?,?)", (*key, sha))
                db.execute("INSERT OR REPLACE INTO paths VALUES (?,?,?,?,?)",
                           (os.path.realpath(p), *key))
        return sha

    @staticmethod
    def _unchanged(path: str, key: Key, follow: bool = False) -> bool:
        try:
            st = os.stat(path) if follow else os.lstat(path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == key

    # -- many files ----------------------------------------------------------------------------
    def scan(self, paths: Iterable[str | os.PathLike[str]], hash: str = "all",
             progress: Callable[[int, int], None] | None = None) -> list[Entry]:
        """Entries for every regular file under ``paths``.

        ``hash``: "all" hashes every file (identification), "collisions" only files whose
        size is shared with another file (dedup: a unique size cannot have a duplicate),
        "none" only fills in cached hashes. ``progress(bytes_done, bytes_total)`` is called
        from worker threads while hashing. Unreadable files keep ``sha256=None`` and are
        listed in ``self.errors``.
        """
        if hash not in ("all", "collisions", "none"):
            raise ValueError("hash must be 'all', 'collisions' or 'none'")
        self.errors = []
        roots = [os.fspath(p) for p in paths]
        found = list(walk_files(roots, self.errors))
        with self._db() as db:
            cache: dict[Key, str] = {(r[0], r[1], r[2], r[3]): r[4]
                                     for r in db.execute("SELECT * FROM hashes")}
            known = {r[0]: (r[1], r[2], r[3], r[4]) for r in db.execute("SELECT * FROM paths")}
        if hash == "all":
            todo = [e for e in found if e.key not in cache]
        elif hash == "collisions":
            sizes = Counter(e.size for e in found)
            todo = [e for e in found if sizes[e.size] > 1 and e.key not in cache]
        else:
            todo = []
        # Hardlinks share a key: hash each inode once.
        unique: dict[Key, Entry] = {}
        for e in todo:
            unique.setdefault(e.key, e)
        new = self._hash_many(list(unique.values()), progress)
        cache.update(new)
        out = [Entry(e.path, e.size, e.mtime_ns, e.dev, e.ino, e.nlink, cache.get(e.key))
               for e in found]
        self._store(new, out, known, roots)
        return out

    def _hash_many(self, todo: list[Entry], progress: Callable[[int, int], None] | None
                   ) -> dict[Key, str]:
        total = sum(e.size for e in todo)
        done = 0

        def tick(n: int) -> None:
            nonlocal done
            with self._lock:
                done += n
                d = done
            if progress is not None:
                progress(d, total)

        def one(e: Entry) -> tuple[Key, str | None]:
            try:
                sha = hash_file(e.path, tick if progress else None)
            except OSError as err:
                with self._lock:
                    self.errors.append(f"{e.path}: cannot read ({err.strerror or err})")
                return e.key, None
            # A file written to while we read it must not get a cached (wrong) hash.
            return e.key, (sha if self._unchanged(os.fspath(e.path), e.key) else None)

        if not todo:
            return {}
        if len(todo) == 1 or self.workers == 1:
            results = [one(e) for e in todo]
        else:
            # Big files first so one large file does not finish last on its own.
            todo.sort(key=lambda e: -e.size)
            with ThreadPoolExecutor(self.workers, thread_name_prefix="sdpanel-hash") as ex:
                results = list(ex.map(one, todo))
        return {k: s for k, s in results if s is not None}

    def _store(self, new: dict[Key, str], entries: list[Entry],
               known: dict[str, tuple[int, int, int, int]], roots: list[str]) -> None:
        changed = [(os.fspath(e.path), *e.key) for e in entries
                   if known.get(os.fspath(e.path)) != e.key]
        seen = {os.fspath(e.path) for e in entries}
        prefixes = tuple(r.rstrip(os.sep) + os.sep for r in roots)
        gone = [(p,) for p in known if p not in seen and (p.startswith(prefixes) or p in roots)]
        if not (new or changed or gone):
            return  # the common rescan: nothing to write
        with self._db() as db:
            db.executemany("INSERT OR REPLACE INTO hashes VALUES (?,?,?,?,?)",
                           [(*k, s) for k, s in new.items()])
            db.executemany("INSERT OR REPLACE INTO paths VALUES (?,?,?,?,?)", changed)
            db.executemany("DELETE FROM paths WHERE path=?", gone)

    def lookup(self, sha256: str) -> list[Entry]:
        """Files last seen with this content, re-checked on disk (moved/changed ones dropped)."""
        with self._db() as db:
            rows = db.execute(
                "SELECT p.path, p.dev, p.ino, p.size, p.mtime_ns FROM paths p JOIN hashes h "
                "ON p.dev=h.dev AND p.ino=h.ino AND p.size=h.size AND p.mtime_ns=h.mtime_ns "
                "WHERE h.sha256=?", (sha256.lower(),)).fetchall()
        out = []
        for path, dev, ino, size, mtime_ns in rows:
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == (dev, ino, size, mtime_ns):
                out.append(_entry(path, st, sha256.lower()))
        return out
