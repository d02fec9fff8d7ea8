"""Where archive members may land: the one path rule for zip and tar.

Nothing is ever written through a symlink. Member paths are checked component by
component with ``lstat`` (never ``realpath``, which gives up on paths longer than PATH_MAX
and then answers "inside" for a chain that leads outside: CVE-2025-4517's shape). Links
are not created while files are written: they are collected and made last, once every link
of the archive is known, and each is refused unless its target resolves inside the install
folder through all of them (``a/b/up -> ../..`` plus ``a/b/esc -> up/../../victim`` leaves
the folder although each text alone looks harmless).
"""

from __future__ import annotations

import os
import re
import stat
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

__all__ = ["ArchiveError", "MemberPlacer", "UnsafeArchiveError", "check_link", "link_resolves_inside",
           "member_parts", "safe_member_path"]

# The kernel's own limit on links followed while resolving one path (ELOOP).
_MAX_LINK_HOPS = 40
_MAX_LINK_TEXT = 4096


class ArchiveError(ValueError):
    """The archive is damaged or in a form we cannot stream."""


class UnsafeArchiveError(ArchiveError):
    """A member would land outside the install folder."""


def member_parts(name: str) -> tuple[str, ...]:
    """The components of a member name, refusing absolute names and ``..``."""
    clean = name.replace("\\", "/")
    if clean.startswith("/") or re.match(r"^[A-Za-z]:", clean):
        raise UnsafeArchiveError(f"Refused archive member {name!r}: absolute path")
    parts = tuple(p for p in clean.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(f"Refused archive member {name!r}: '..' leaves the install folder")
    return parts


def _check_real_dirs(dest: Path, parts: tuple[str, ...], name: str) -> None:
    """Every existing ancestor of ``dest/parts`` must be a real directory, not a link."""
    p = dest
    for comp in parts[:-1]:
        p = p / comp
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(st.st_mode):
            raise UnsafeArchiveError(f"Refused archive member {name!r}: it is written through "
                                     f"the link {str(p.relative_to(dest))!r}")
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeArchiveError(f"Refused archive member {name!r}: "
                                     f"{str(p.relative_to(dest))!r} is a file, not a folder")


def safe_member_path(dest: Path, name: str) -> Path:
    """``dest/name`` after refusing absolute names, ``..`` and parents that are links.
    ``dest`` must already be resolved."""
    parts = member_parts(name)
    if not parts:
        return dest
    _check_real_dirs(dest, parts, name)
    return dest.joinpath(*parts)


def link_resolves_inside(dest: Path, link_parts: tuple[str, ...], target: str,
                         pending: Mapping[tuple[str, ...], str] | None = None) -> bool:
    """Whether the link at ``dest/link_parts`` with text ``target`` resolves inside
    ``dest``, following every link on the way as the kernel would: links of this archive
    not yet made (``pending``) and links already on disk. Going above ``dest`` at any step
    counts as outside, even if a later ``..``/name would come back."""
    if os.path.isabs(target):
        return False
    pending = pending or {}
    stack: list[str] = list(link_parts[:-1])
    todo: deque[str] = deque(target.split("/"))
    hops = 0
    while todo:
        comp = todo.popleft()
        if comp in ("", "."):
            continue
        if comp == "..":
            if not stack:
                return False
            stack.pop()
            continue
        stack.append(comp)
        key = tuple(stack)
        text = pending.get(key)
        if text is None:
            on_disk = dest.joinpath(*key)
            if os.path.islink(on_disk):
                text = os.readlink(on_disk)
        if text is None:
            continue
        hops += 1
        if hops > _MAX_LINK_HOPS or os.path.isabs(text):
            return False
        stack.pop()
        todo.extendleft(reversed(text.split("/")))
    return True


def check_link(dest: Path, link_path: Path, target: str, name: str,
               pending: Mapping[tuple[str, ...], str] | None = None) -> None:
    """Refuse the link ``link_path -> target`` unless it resolves inside ``dest``."""
    if os.path.isabs(target):
        raise UnsafeArchiveError(f"Refused archive member {name!r}: symlink to absolute path {target!r}")
    parts = link_path.relative_to(dest).parts
    if not link_resolves_inside(dest, parts, target, pending):
        raise UnsafeArchiveError(f"Refused archive member {name!r}: symlink {target!r} points "
                                 f"outside the install folder")


class MemberPlacer:
    """Writes the members of one archive into ``dest`` (already resolved) by the rule above.
    Call :meth:`make_links` once every member has been seen."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.links: dict[tuple[str, ...], tuple[str, str]] = {}  # parts -> (target, name)
        self.files: dict[tuple[str, ...], Path] = {}

    def _parts(self, name: str) -> tuple[str, ...]:
        parts = member_parts(name)
        for i in range(1, len(parts)):
            if parts[:i] in self.links:
                raise UnsafeArchiveError(f"Refused archive member {name!r}: it is written "
                                         f"through {'/'.join(parts[:i])!r}, a symlink of this archive")
            if parts[:i] in self.files:
                raise UnsafeArchiveError(f"Refused archive member {name!r}: it is written "
                                         f"through {'/'.join(parts[:i])!r}, a file of this archive")
        _check_real_dirs(self.dest, parts, name)
        return parts

    def mkdir(self, name: str) -> Path:
        parts = self._parts(name)
        path = self.dest.joinpath(*parts)
        if os.path.islink(path):
            raise UnsafeArchiveError(f"Refused archive member {name!r}: a link is already there")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def open_file(self, name: str) -> tuple[Path, BinaryIO]:
        """A new regular file for member ``name``; an existing link there is not followed."""
        parts = self._parts(name)
        if not parts:
            raise UnsafeArchiveError(f"Refused archive member {name!r}: it names the install folder")
        path = self.dest.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as exc:
            if os.path.islink(path):
                raise UnsafeArchiveError(f"Refused archive member {name!r}: a link is already "
                                         "there") from exc
            raise
        self.files[parts] = path
        return path, os.fdopen(fd, "wb")

    def hardlink(self, name: str, target_name: str) -> Path:
        """A hard link may only name a regular file this archive wrote."""
        src = self.files.get(member_parts(target_name))
        if src is None:
            raise UnsafeArchiveError(f"Refused archive member {name!r}: hard link to "
                                     f"{target_name!r}, which is not a file of this archive")
        path, out = self.open_file(name)
        out.close()
        os.unlink(path)
        os.link(src, path, follow_symlinks=False)
        return path

    def add_link(self, name: str, target: str) -> None:
        """Remember a symlink member; it is checked and made in :meth:`make_links`."""
        if len(target) > _MAX_LINK_TEXT or "\x00" in target:
            raise UnsafeArchiveError(f"Refused archive member {name!r}: symlink text is not a path")
        if os.path.isabs(target):
            raise UnsafeArchiveError(f"Refused archive member {name!r}: symlink to absolute path {target!r}")
        parts = self._parts(name)
        if not parts:
            raise UnsafeArchiveError(f"Refused archive member {name!r}: it names the install folder")
        self.dest.joinpath(*parts).parent.mkdir(parents=True, exist_ok=True)
        self.links[parts] = (target, name)

    def make_links(self) -> int:
        """Check every collected link against all of them, then create them."""
        pending = {parts: target for parts, (target, _name) in self.links.items()}
        for parts, (target, name) in self.links.items():
            if not link_resolves_inside(self.dest, parts, target, pending):
                raise UnsafeArchiveError(f"Refused archive member {name!r}: symlink {target!r} "
                                         "points outside the install folder (through the links "
                                         "of this archive)")
        for parts, (target, name) in self.links.items():
            path = self.dest.joinpath(*parts)
            _check_real_dirs(self.dest, parts, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                pass
            else:
                if not stat.S_ISREG(st.st_mode):
                    raise UnsafeArchiveError(f"Refused archive member {name!r}: a folder or link "
                                             "of the same name is already there")
                os.unlink(path)  # a zip link's text, or an earlier tar member of that name
                self.files.pop(parts, None)
            os.symlink(target, path)
        return len(self.links)
