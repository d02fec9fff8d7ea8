"""How far an archive may expand while it is unpacked (decompression bombs).

Three bounds, the smallest wins, each failing with one sentence before the bytes that
would cross it are written: the free space where the install goes; a ratio to the
archive's own size (a 1 MB zip that unpacks to 1.1 GB is no WebUI package); the unpacked
size a size manifest declares. Members that declare their size (tar headers, zip local
headers) are checked before any of their bytes are written; without a known archive size
the ratio is held against the compressed bytes read so far.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sdpanel.storage import human_bytes

from ._member_paths import ArchiveError

__all__ = ["ArchiveTooLargeError", "ExpansionBudget", "ExtractLimits", "disk_full_error"]

# Real packages (venvs, git checkouts, weights) unpack to 1.2-6x their zip/zstd size;
# text-only trees reach 10-20x. 100x leaves room for those and stops bombs (200-30,000x).
DEFAULT_RATIO = 100.0
# Unpacked bytes always allowed on top of the ratio: tiny archives of text, the first
# members before the compressed byte count catches up with the read-ahead.
DEFAULT_SLACK = 32 << 20
_RECHECK_FREE_EVERY = 256 << 20


class ArchiveTooLargeError(ArchiveError):
    """The archive would unpack beyond a bound; the message names which and what to do."""


@dataclass(frozen=True)
class ExtractLimits:
    """Bounds for one extraction. ``compressed_size``: the archive's size when known (the
    download's Content-Length); ``declared_size``: the unpacked size a manifest declares."""

    compressed_size: int | None = None
    declared_size: int | None = None
    max_ratio: float = DEFAULT_RATIO
    slack: int = DEFAULT_SLACK


def disk_full_error(dest: Path, exc: OSError) -> ArchiveTooLargeError | None:
    """The one sentence for a disk that filled up mid-way (another writer took the space)."""
    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    return ArchiveTooLargeError(f"The disk holding {dest.parent} filled up while unpacking the "
                                "package: free some space (or install to another disk) and "
                                "install again.")


class ExpansionBudget:
    """Counts unpacked bytes against the bounds. ``compressed_read`` returns the archive
    bytes consumed so far (for the ratio when the archive's size is unknown)."""

    def __init__(self, dest: Path, limits: ExtractLimits | None = None,
                 compressed_read: Callable[[], int] | None = None) -> None:
        self.dest = dest
        self.limits = limits or ExtractLimits()
        self.compressed_read = compressed_read
        self.used = 0
        self._next_free_check = _RECHECK_FREE_EVERY
        self.free = shutil.disk_usage(dest).free

    def _ratio_cap(self) -> int | None:
        size = self.limits.compressed_size
        return None if size is None else int(size * self.limits.max_ratio) + self.limits.slack

    def _refuse(self, upto: int) -> None:
        lim = self.limits
        ratio_cap = self._ratio_cap()
        if upto > self.free:
            raise ArchiveTooLargeError(
                f"Not enough free space to unpack the package: it needs more than "
                f"{human_bytes(upto)} but {self.dest.parent} has {human_bytes(self.free)} free; "
                "free some space or install to another disk.")
        if ratio_cap is not None and upto > ratio_cap:
            raise ArchiveTooLargeError(
                f"Refused the package: it unpacks to more than {human_bytes(upto)}, over "
                f"{lim.max_ratio:g} times its {human_bytes(lim.compressed_size or 0)} size, which "
                "no real WebUI package does (a damaged archive or a decompression bomb); use "
                "the WebUI's official package.")
        if lim.declared_size is not None and upto > lim.declared_size + lim.slack:
            raise ArchiveTooLargeError(
                f"Refused the package: it unpacks to more than {human_bytes(upto)}, beyond the "
                f"{human_bytes(lim.declared_size)} its size manifest declares; the package is "
                "damaged or was replaced: download it again from the official source.")
        if lim.compressed_size is None and self.compressed_read is not None:
            read = self.compressed_read()
            if upto > read * lim.max_ratio + lim.slack:
                raise ArchiveTooLargeError(
                    f"Refused the package: {human_bytes(read)} of it unpacked to more than "
                    f"{human_bytes(upto)}, over {lim.max_ratio:g} times its size, which no real "
                    "WebUI package does (a damaged archive or a decompression bomb); use the "
                    "WebUI's official package.")

    def expect(self, size: int) -> None:
        """A member declares ``size`` bytes: refuse before writing any of them."""
        self._refuse(self.used + size)

    def charge(self, n: int) -> None:
        """``n`` more bytes are about to be written."""
        self.used += n
        if self.used >= self._next_free_check:
            # Other writers share the disk: look again now and then, not per chunk.
            self._next_free_check = self.used + _RECHECK_FREE_EVERY
            self.free = self.used + shutil.disk_usage(self.dest).free
        self._refuse(self.used)
