"""Update a WebUI (and its extensions) or switch it to a tag, branch or commit, as sdAIgen
offers, keeping the user's local changes.

Installs are shallow checkouts (``_git._clone``; the prebuilt packages carry their ``.git``
too), so a move is: fetch the wanted commit (``--depth 1`` when shallow), then
``git reset --keep`` onto it. ``--keep`` carries uncommitted edits across and refuses,
changing nothing, when an edited file differs between the two commits: an update never
loses work and never leaves a half-moved tree. A full clone is only moved forward (local
commits that are not in the target stop the update). The install marker then records the
commit that is really checked out, and the ref it follows.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from sdpanel._childenv import child_env
from sdpanel.runtime import EventBus

from ._git import StepError, StepLog
from ._install import InstallError, installed_info, record_in_marker

__all__ = ["MoveResult", "checkout_head", "move_checkout", "update_checkouts"]

_SHA = re.compile(r"^[0-9a-f]{7,40}$")


@dataclass
class MoveResult:
    name: str
    ok: bool
    old: str = ""
    new: str = ""
    ref: str | None = None
    kept_changes: list[str] = field(default_factory=list)
    error: str = ""

    def line(self) -> str:
        if not self.ok:
            return f"{self.name}: {self.error}"
        if self.old == self.new:
            return f"{self.name}: already at {self.new[:12]}" + (f" ({self.ref})" if self.ref else "")
        kept = f", local changes kept in {', '.join(self.kept_changes[:5])}" if self.kept_changes else ""
        return f"{self.name}: {self.old[:12]} -> {self.new[:12]}" + (f" ({self.ref})" if self.ref else "") + kept


async def _git(log: StepLog, repo: Path, step: str, *args: str) -> str:
    lines = await log.run(step, ["git", "-c", "advice.detachedHead=false", "-C", str(repo), *args])
    return "\n".join(lines).strip()


async def _query(repo: Path, *args: str) -> str | None:
    """A git question whose failure is an answer (None), kept out of the log."""
    proc = await asyncio.create_subprocess_exec(
        "git", "-C", str(repo), *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        env=child_env({"GIT_TERMINAL_PROMPT": "0"}))
    out, _ = await proc.communicate()
    return out.decode("utf-8", errors="replace").strip() if proc.returncode == 0 else None


async def checkout_head(repo: Path) -> tuple[str, str] | None:
    """(commit, branch or exact tag, "" when detached) of the checkout at ``repo``; None
    when it is no git checkout (a package without its ``.git``)."""
    if not (repo / ".git").exists():
        return None
    head = await _query(repo, "rev-parse", "HEAD")
    if not head:
        return None
    ref = await _query(repo, "symbolic-ref", "-q", "--short", "HEAD") or \
        await _query(repo, "describe", "--tags", "--exact-match", "HEAD") or ""
    return head, ref


async def move_checkout(repo: Path, target: str | None, *, log: StepLog, name: str,
                        forward_only: bool) -> MoveResult:
    """Move the checkout at ``repo`` to ``target`` (tag, branch, commit; None: what
    ``origin`` has as HEAD), keeping local changes. Never raises for git's refusals: the
    result says why, in one sentence."""
    old = await _query(repo, "rev-parse", "HEAD") or ""
    res = MoveResult(name, False, old=old, ref=None if target is None or _SHA.match(target) else target)
    if not (repo / ".git").exists():
        res.error = (f"{repo} is not a git checkout (the package holds no .git): reinstall it "
                     "from git to update or switch it")
        return res
    shallow = (await _query(repo, "rev-parse", "--is-shallow-repository")) == "true"
    have = target is not None and _SHA.match(target) and \
        await _query(repo, "cat-file", "-e", f"{target}^{{commit}}") is not None
    if not have:
        want = target or "HEAD"
        try:
            await _git(log, repo, "git fetch", "fetch", *(["--depth", "1"] if shallow else []), "origin", want)
        except StepError as exc:
            tail = exc.tail[-1] if exc.tail else ""
            res.error = (f"git could not fetch {want!r} from origin ({tail.strip() or 'no output'}): "
                         "check the tag, branch or commit name and the network")
            return res
    new = await _query(repo, "rev-parse", f"{target}^{{commit}}" if have else "FETCH_HEAD^{commit}") or ""
    changed = await _query(repo, "diff", "--name-only", "HEAD")
    res.kept_changes = [x for x in (changed or "").splitlines() if x]
    if new and new != old:
        if forward_only and not shallow and await _query(repo, "merge-base", "--is-ancestor", old, new) is None:
            res.error = (f"{name} has commits that {target or 'the update'} does not contain: not a "
                         "fast-forward, so nothing was changed (switch to a ref explicitly to move anyway)")
            return res
        try:
            await _git(log, repo, "git checkout", "checkout", "-q", "--detach")
            await _git(log, repo, "git reset --keep", "reset", "-q", "--keep", new)
        except StepError as exc:
            files = [m.group(1) for x in exc.tail if (m := re.match(r"error: Entry '(.+)' not uptodate", x))]
            res.error = (f"local changes in {', '.join(files) or 'the checkout'} conflict with "
                         f"{target or 'the update'}: nothing was changed; commit or undo them "
                         f"(git -C {repo} stash) and try again")
            return res
    res.new = await _query(repo, "rev-parse", "HEAD") or new
    res.ok = True
    return res


async def update_checkouts(webui_dir: Path, *, webui: str, target: str | None, follow: str | None,
                           extensions_dir: str, extensions: bool, bus: EventBus | None,
                           log_path: Path | None) -> list[MoveResult]:
    """Move the WebUI at ``webui_dir`` (``target`` given: switch to it; else update along
    ``follow``, the ref it was installed from) and, when updating, each git extension under
    ``extensions_dir`` to its remote tip. The marker records the WebUI's real commit."""
    if installed_info(webui_dir) is None:
        raise InstallError(f"{webui} is not installed at {webui_dir}: install it first "
                           f"(`sdpanel install {webui}`)")
    log = StepLog(log_path, bus, f"webui:{webui}", key="update")
    main = await move_checkout(webui_dir, target or follow, log=log, name=webui, forward_only=target is None)
    results = [main]
    if main.ok:
        fields = {"version": main.new, "updated": time.time()}
        if target is not None:
            fields["ref"] = main.ref or ""
        record_in_marker(webui_dir, **fields)
    if extensions and target is None:
        root = webui_dir / extensions_dir
        for ext in sorted(p for p in root.iterdir() if (p / ".git").exists()) if root.is_dir() else []:
            ext_log = StepLog(log_path, bus, f"webui:{webui}", key=f"extension:{ext.name}")
            results.append(await move_checkout(ext, None, log=ext_log, name=ext.name, forward_only=True))
    for r in results:
        log.write(r.line(), "info" if r.ok else "warning")
    return results
