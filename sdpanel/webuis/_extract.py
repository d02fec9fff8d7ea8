"""Streaming extraction of WebUI packages: entries are written while the bytes arrive.

- ``.zip``: a local-file-header reader (Python's ``zipfile`` needs a seekable file, which
  would mean a second pass over a temporary copy). Stored and deflated entries, data
  descriptors, zip64 sizes. Unix modes and symlinks live only in the central directory at
  the end of the archive, so they are applied once it arrives.
- ``.tar.zst`` / ``.tar.lz4``: the ``zstd``/``lz4`` tools as a pipe into ``tarfile`` stream
  mode; ``.tar.gz`` / ``.tar`` by ``tarfile`` alone.

Every member lands by the rule of ``_member_paths`` (nothing written through a link; links
made last, each resolving inside through all of them) and within the bounds of
``_expansion`` (free space, a ratio to the archive's size, a manifest's size). Tar members
are placed by that same code, not by ``tarfile``'s extraction filter. Absolute
``bin/python*`` links of a packed venv are the one exception: they point at the builder's
interpreter, so they are skipped here and recreated by the venv fixer.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import struct
import subprocess
import tarfile
import threading
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO

from sdpanel._childenv import child_env

from ._expansion import ArchiveTooLargeError, ExpansionBudget, ExtractLimits, disk_full_error
from ._member_paths import (
    ArchiveError,
    MemberPlacer,
    UnsafeArchiveError,
    check_link,
    safe_member_path,
)

__all__ = ["ArchiveError", "ArchiveTooLargeError", "ByteQueue", "ExtractLimits", "ExtractReport",
           "UnsafeArchiveError", "check_link", "detect_format", "extract_stream", "safe_member_path"]

_VENV_PYTHON = re.compile(r"(^|/)bin/python[0-9.]*$")
_CHUNK = 1 << 20
# tarfile's stream reader joins its 10 KiB records per read: small reads keep that cheap.
_TAR_READ = 1 << 16
# Modes keep the owner's rwx and others' r-x only: no setuid/setgid/sticky, no shared write.
_MODE_MASK = 0o755


@dataclass
class ExtractReport:
    files: int = 0
    bytes: int = 0
    links: int = 0
    skipped_links: list[str] = field(default_factory=list)


def detect_format(name: str, head: bytes = b"") -> str:
    """Archive format from magic bytes, else from the file name."""
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "tar.zst"
    if head.startswith(b"\x04\x22\x4d\x18"):
        return "tar.lz4"
    if head.startswith(b"\x1f\x8b"):
        return "tar.gz"
    lower = name.lower().split("?")[0]
    for suffix, fmt in ((".zip", "zip"), (".tar.zst", "tar.zst"), (".tzst", "tar.zst"),
                        (".tar.lz4", "tar.lz4"), (".tar.gz", "tar.gz"), (".tgz", "tar.gz"),
                        (".tar", "tar")):
        if lower.endswith(suffix):
            return fmt
    raise ArchiveError(f"Unknown package format for {name!r}: use .zip, .tar.zst, .tar.lz4 or .tar.gz")


class ByteQueue:
    """A bounded hand-over of chunks from the download (event loop) to an extraction thread.
    ``put`` blocks when full (back-pressure); ``read(n)`` is a file-like blocking read."""

    def __init__(self, max_chunks: int = 64) -> None:
        self._chunks: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._max = max_chunks
        self._closed = False
        self._error: BaseException | None = None
        self._aborted = False
        self._buf = b""
        self.taken = 0  # archive bytes handed to the reader (for the expansion ratio)

    def put(self, chunk: bytes) -> bool:
        """False when the reader gave up (stop downloading)."""
        with self._cond:
            while len(self._chunks) >= self._max and not self._aborted:
                self._cond.wait()
            if self._aborted:
                return False
            self._chunks.append(chunk)
            self._cond.notify_all()
            return True

    def try_put(self, chunk: bytes) -> bool | None:
        """Non-blocking put: True/False as ``put``, None when full (then call ``put``)."""
        with self._cond:
            if self._aborted:
                return False
            if len(self._chunks) >= self._max:
                return None
            self._chunks.append(chunk)
            self._cond.notify_all()
            return True

    def close(self, error: BaseException | None = None) -> None:
        with self._cond:
            self._closed, self._error = True, error
            self._cond.notify_all()

    def abort(self) -> None:
        with self._cond:
            self._aborted = True
            self._chunks.clear()
            self._cond.notify_all()

    def _next(self) -> bytes:
        with self._cond:
            while not self._chunks and not self._closed:
                self._cond.wait()
            if self._chunks:
                chunk = self._chunks.popleft()
                self.taken += len(chunk)
                self._cond.notify_all()
                return chunk
            if self._error is not None:
                raise ArchiveError(f"download stopped: {self._error}") from self._error
            return b""

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = [self._buf]
            self._buf = b""
            while chunk := self._next():
                parts.append(chunk)
            return b"".join(parts)
        while len(self._buf) < n:
            chunk = self._next()
            if not chunk:
                break
            self._buf = self._buf + chunk if self._buf else chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def unread(self, data: bytes) -> None:
        self._buf = data + self._buf

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


# ---- zip ---------------------------------------------------------------------------------

_LOCAL, _CENTRAL, _DESC = b"PK\x03\x04", b"PK\x01\x02", b"PK\x07\x08"


def _read_exact(r: ByteQueue, n: int, what: str) -> bytes:
    data = r.read(n)
    if len(data) != n:
        raise ArchiveError(f"Archive ends early (in {what}): the download was cut short or the file is damaged")
    return data


def _zip64_sizes(extra: bytes, csize: int, usize: int) -> tuple[int, int, bool]:
    i = 0
    while i + 4 <= len(extra):
        hid, hlen = struct.unpack_from("<HH", extra, i)
        if hid == 1:
            vals = list(struct.unpack_from(f"<{hlen // 8}Q", extra, i + 4))
            if usize == 0xFFFFFFFF and vals:
                usize = vals.pop(0)
            if csize == 0xFFFFFFFF and vals:
                csize = vals.pop(0)
            return csize, usize, True
        i += 4 + hlen
    return csize, usize, False


def _stored_with_descriptor(r: ByteQueue, out: _Sink, zip64: bool) -> tuple[int, int]:
    """Stored entry of unknown length: scan for a descriptor whose size and CRC match the
    bytes before it, writing the bytes that cannot be part of one as they come."""
    fmt, dlen = ("<IQQ", 24) if zip64 else ("<III", 16)
    buf, written, crc = b"", 0, 0
    while True:
        chunk = r.read(1 << 16)
        if not chunk:
            raise ArchiveError("Archive ends inside a stored entry")
        buf += chunk
        keep_from, pos = max(0, len(buf) - (dlen - 1)), 0
        while (j := buf.find(_DESC, pos)) >= 0:
            if j + dlen > len(buf):
                keep_from = min(keep_from, j)
                break
            want_crc, csize, _usize = struct.unpack_from(fmt, buf, j + 4)
            if csize == written + j and zlib.crc32(buf[:j], crc) == want_crc:
                if out is not None:
                    out.write(buf[:j])
                r.unread(buf[j + dlen:])
                return written + j, want_crc
            pos = j + 1
        safe, buf = buf[:keep_from], buf[keep_from:]
        if out is not None:
            out.write(safe)
        crc, written = zlib.crc32(safe, crc), written + len(safe)


class _Sink:
    """A member's output: every write is first charged to the expansion budget."""

    def __init__(self, out: BinaryIO | None, budget: ExpansionBudget) -> None:
        self.out, self.budget = out, budget

    def write(self, data: bytes) -> None:
        if data:
            self.budget.charge(len(data))
            if self.out is not None:
                self.out.write(data)


def _inflate(r: ByteQueue, sink: _Sink, name: str, csize: int, descriptor: bool,
             declared: int | None) -> tuple[int, int]:
    """Deflated member → (size, crc), at most ``_CHUNK`` of output per step: a bomb's
    1 MB of input never becomes 1 GB in memory at once."""
    d = zlib.decompressobj(-15)
    left = csize if not descriptor or csize else -1
    size, crc = 0, 0
    while not d.eof:
        if d.unconsumed_tail:
            piece = d.unconsumed_tail
        else:
            want = _CHUNK if left < 0 else min(left, _CHUNK)
            piece = r.read(want) if want else b""
            if not piece:
                raise ArchiveError(f"Archive ends inside member {name!r}")
            if left > 0:
                left -= len(piece)
        data = d.decompress(piece, _CHUNK)
        size += len(data)
        if declared is not None and size > declared:
            raise ArchiveError(f"Zip member {name!r} unpacks beyond the {declared} bytes its header "
                               "declares: the archive is damaged or hostile; use the official package")
        crc = zlib.crc32(data, crc)
        sink.write(data)
    if d.unused_data:
        r.unread(d.unused_data)
    return size, crc


def _extract_zip(r: ByteQueue, placer: MemberPlacer, report: ExtractReport,
                 budget: ExpansionBudget) -> None:
    written: dict[str, Path] = {}
    while True:
        sig = r.read(4)
        if sig != _LOCAL:
            if sig in (_CENTRAL, b"PK\x05\x06", b"PK\x06\x06"):
                r.unread(sig)
                break
            raise ArchiveError("Not a zip archive (or damaged): no local file header where one was expected")
        (_ver, flags, method, _t, _d, crc, csize, usize, nlen, xlen) = struct.unpack(
            "<HHHHHIIIHH", _read_exact(r, 26, "a file header"))
        raw_name = _read_exact(r, nlen, "a file name")
        extra = _read_exact(r, xlen, "a file header")
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437")
        csize, usize, zip64 = _zip64_sizes(extra, csize, usize)
        if flags & 0x1:
            raise ArchiveError(f"Encrypted zip member {name!r} is not supported")
        if method not in (0, 8):
            raise ArchiveError(f"Zip member {name!r} uses compression method {method}; "
                               "re-pack with deflate, or use .tar.zst")
        is_dir = name.endswith("/")
        descriptor = bool(flags & 0x8)
        # Sizes in the local header are real unless a data descriptor follows the data.
        declared = None if descriptor and not usize else usize
        if declared is not None and not is_dir:
            budget.expect(declared)
        out: BinaryIO | None = None
        try:
            if is_dir:
                placer.mkdir(name)
            else:
                path, out = placer.open_file(name)
            sink = _Sink(out, budget)
            got_crc, size = 0, 0
            if method == 0 and descriptor and csize == 0:
                size, got_crc = _stored_with_descriptor(r, sink, zip64)
                crc, descriptor = got_crc, False
            elif method == 0:
                left = csize
                while left:
                    piece = _read_exact(r, min(left, _CHUNK), name)
                    left -= len(piece)
                    got_crc = zlib.crc32(piece, got_crc)
                    size += len(piece)
                    sink.write(piece)
            else:
                size, got_crc = _inflate(r, sink, name, csize, descriptor, declared)
            if descriptor:
                head = _read_exact(r, 4, "a data descriptor")
                if head == _DESC:
                    head = _read_exact(r, 4, "a data descriptor")
                crc = struct.unpack("<I", head)[0]
                _read_exact(r, 16 if zip64 else 8, "a data descriptor")
            if not is_dir and got_crc != crc:
                raise ArchiveError(f"Zip member {name!r} is damaged (CRC mismatch)")
        except OSError as exc:
            raise disk_full_error(placer.dest, exc) or ArchiveError(
                f"Cannot extract member {name!r}: {exc}") from exc
        finally:
            if out:
                out.close()
        if not is_dir:
            written[name] = path
            report.files += 1
            report.bytes += size
    _apply_central_directory(r, placer, written, report)


def _apply_central_directory(r: ByteQueue, placer: MemberPlacer, written: dict[str, Path],
                             report: ExtractReport) -> None:
    """Modes first, then the links (all known by now, so each is checked against all)."""
    links: list[tuple[str, Path]] = []
    while r.read(4) == _CENTRAL:
        fields = struct.unpack("<HHHHHHIIIHHHHHII", _read_exact(r, 42, "the central directory"))
        made_by, flags = fields[0], fields[2]
        nlen, xlen, clen, ext_attr = fields[9], fields[10], fields[11], fields[14]
        name = _read_exact(r, nlen, "the central directory").decode("utf-8" if flags & 0x800 else "cp437")
        _read_exact(r, xlen + clen, "the central directory")
        mode = ext_attr >> 16
        path = written.get(name)
        if path is None or (made_by >> 8) != 3 or not mode:
            continue
        if stat.S_ISLNK(mode):
            links.append((name, path))
        elif stat.S_ISREG(mode) or not stat.S_IFMT(mode):
            # Plain chmod is safe here: no link of the archive exists yet.
            os.chmod(path, (mode & _MODE_MASK) | 0o600)
    for name, path in links:
        if path.stat().st_size > 4096:
            raise UnsafeArchiveError(f"Refused archive member {name!r}: symlink text is not a path")
        target = path.read_text(encoding="utf-8", errors="replace")
        if os.path.isabs(target) and _VENV_PYTHON.search(name):
            path.unlink()
            report.skipped_links.append(name)
            continue
        placer.add_link(name, target)
    report.links += placer.make_links()
    r.drain()


# ---- tar -----------------------------------------------------------------------------------

def _tar_member(tf: tarfile.TarFile, member: tarfile.TarInfo, placer: MemberPlacer,
                report: ExtractReport, budget: ExpansionBudget) -> None:
    name = member.name
    if member.issym():
        if os.path.isabs(member.linkname) and _VENV_PYTHON.search(name):
            report.skipped_links.append(name)
        else:
            placer.add_link(name, member.linkname)
    elif member.islnk():
        placer.hardlink(name, member.linkname)
        report.files += 1
    elif member.isdir():
        placer.mkdir(name)
    elif member.isreg():
        budget.expect(member.size)
        src = tf.extractfile(member)
        assert src is not None
        _path, out = placer.open_file(name)
        with out:
            sink = _Sink(out, budget)
            while piece := src.read(_TAR_READ):
                sink.write(piece)
            out.flush()
            os.fchmod(out.fileno(), (member.mode & _MODE_MASK) | 0o600)
            with contextlib.suppress(OSError, OverflowError, ValueError):
                os.utime(out.fileno(), (member.mtime, member.mtime))
        report.files += 1
        report.bytes += member.size
    else:
        raise UnsafeArchiveError(f"Refused archive member {name!r}: a device, pipe or other "
                                 "special file has no place in a package")


def _extract_tar(stream: IO[bytes] | ByteQueue, dest: Path, report: ExtractReport,
                 gz: bool = False, budget: ExpansionBudget | None = None) -> None:
    placer = MemberPlacer(dest)
    budget = budget or ExpansionBudget(dest)
    try:
        with tarfile.open(fileobj=stream, mode="r|gz" if gz else "r|") as tf:  # type: ignore[call-overload]
            for member in tf:
                _tar_member(tf, member, placer, report, budget)
        report.links += placer.make_links()
    except (tarfile.ReadError, tarfile.StreamError, EOFError, zlib.error) as exc:
        raise ArchiveError(f"Damaged or truncated tar archive: {exc}") from exc
    except OSError as exc:
        raise disk_full_error(dest, exc) or ArchiveError(f"Cannot extract the package: {exc}") from exc


def _extract_piped(codec: str, r: ByteQueue, dest: Path, report: ExtractReport,
                   budget: ExpansionBudget) -> None:
    tool = shutil.which(codec)
    if tool is None:
        raise ArchiveError(f"`{codec}` is needed to unpack .tar.{'zst' if codec == 'zstd' else codec} "
                           f"packages: install it (apt-get install {codec}) or use a .zip package")
    proc = subprocess.Popen([tool, "-d", "-c", "-q"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env())
    assert proc.stdin and proc.stdout and proc.stderr
    feed_error: list[BaseException] = []

    def feed() -> None:
        try:
            while chunk := r.read(_CHUNK):
                proc.stdin.write(chunk)  # type: ignore[union-attr]
        except BrokenPipeError:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the extracting thread
            feed_error.append(exc)
        finally:
            with contextlib.suppress(OSError):
                proc.stdin.close()  # type: ignore[union-attr]

    feeder = threading.Thread(target=feed, name=f"{codec}-feed", daemon=True)
    feeder.start()
    try:
        _extract_tar(proc.stdout, dest, report, budget=budget)
        proc.stdout.read()
    except BaseException:
        r.abort()
        proc.kill()
        raise
    finally:
        feeder.join()
        rc = proc.wait()
        err = proc.stderr.read().decode(errors="replace").strip()
    if feed_error:
        raise ArchiveError(str(feed_error[0])) from feed_error[0]
    if rc != 0:
        raise ArchiveError(f"{codec} failed (exit {rc}): {err or 'damaged archive'}")


def extract_stream(fmt: str, r: ByteQueue, dest: Path,
                   limits: ExtractLimits | None = None) -> ExtractReport:
    """Extract the archive arriving through ``r`` into ``dest`` (blocking; run in a thread),
    within ``limits`` (default: the free space and the ratio to the bytes read so far).
    On any error the queue is aborted so the download stops too."""
    dest = Path(os.path.realpath(dest))
    dest.mkdir(parents=True, exist_ok=True)
    report = ExtractReport()
    budget = ExpansionBudget(dest, limits, lambda: r.taken)
    try:
        if fmt == "zip":
            _extract_zip(r, MemberPlacer(dest), report, budget)
        elif fmt == "tar.zst":
            _extract_piped("zstd", r, dest, report, budget)
        elif fmt == "tar.lz4":
            _extract_piped("lz4", r, dest, report, budget)
        elif fmt in ("tar.gz", "tar"):
            _extract_tar(r, dest, report, gz=fmt == "tar.gz", budget=budget)
        else:
            raise ArchiveError(f"Unsupported package format {fmt!r}")
    except BaseException:
        r.abort()
        raise
    return report
