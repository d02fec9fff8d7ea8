"""Every command and setting a message tells the user about exists.

A user told to run `sdpanel webui start` (there is no such verb) is stuck: so the whole
product (Python messages and docstrings, the panels' and sidebar's TypeScript, the README)
is scanned for `sdpanel ...` commands in backticks, and each one must parse with the real
CLI parser; every ``SDPANEL_*`` variable and UPPERCASE notebook field a message names must
be a setting, a secret or a variable the code reads.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from sdpanel.cli import build_parser
from sdpanel.settings import Settings
from sdpanel.settings._secrets import SECRET_NAMES

REPO = Path(__file__).resolve().parents[2]
BUILD_OUTPUTS = ("sdpanel/static", "sdpanel/labextension")


def _product_files() -> list[Path]:
    files = list((REPO / "sdpanel").rglob("*.py"))
    files += list((REPO / "js" / "src").rglob("*.ts"))
    files.append(REPO / "README.md")
    return sorted(p for p in files
                  if not any(p.relative_to(REPO).as_posix().startswith(b) for b in BUILD_OUTPUTS))


def _commands() -> list[tuple[str, str]]:
    """(where, command line) for each backticked `sdpanel ...` in the product."""
    found = []
    for path in _product_files():
        text = path.read_text()
        # In TypeScript a backtick opens a template literal (a label like
        # `sdpanel ${version}`); commands shown to users sit inside "..." strings.
        spans = re.findall(r'"[^"\n]*"', text) if path.suffix == ".ts" else [text]
        for span in spans:
            for m in re.finditer(r"`sdpanel(?: ([^`\n]*))?`", span):
                found.append((path.relative_to(REPO).as_posix(), m.group(1) or ""))
    return found


def _argv_variants(command: str) -> list[list[str]]:
    """Turn a documented command line into argv lists the parser can check: placeholders
    (``{settings.webui}``, ``" + x + "``, ``<webui>``) become a real WebUI id, metavars
    (``PROMPT``) a word, ``[optional]`` groups and ``...`` are dropped, and ``a|b|c`` in
    the verb position is each alternative."""
    line = re.sub(r'"\s*\+[^+]+\+\s*"', "comfyui", command)
    line = re.sub(r"\$?\{[^}]*\}|<[a-z_-]+>", "comfyui", line)
    line = re.sub(r"\[[^\]]*\]", "", line).replace("...", "").replace("…", "")
    line = line.split(" -- ")[0]
    words = []
    for word in shlex.split(line.replace('\\"', '"')):
        if re.fullmatch(r"[A-Z][A-Z0-9_-]*", word):
            word = "x"
        words.append(word)
    if not words:
        return [[]]
    firsts = words[0].split("|")
    seconds = words[1].split("|") if len(words) > 1 else [None]
    rest = [w.split("|")[0] for w in words[2:]]
    return [[a, *([b] if b is not None else []), *rest] for a in firsts for b in seconds]


COMMANDS = _commands()


def test_the_scan_finds_the_commands_users_are_told_about() -> None:
    # The scan itself must see the real hints, or the next test proves nothing.
    lines = {c for _, c in COMMANDS}
    assert any(c.startswith("launch") for c in lines), lines
    assert any(c.startswith("stop") for c in lines), lines
    assert len(COMMANDS) >= 20


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[f"{w}:{c}" for w, c in COMMANDS])
def test_every_command_named_in_a_message_parses(where: str, command: str) -> None:
    if command.split(" ")[0].endswith(":"):
        return  # a quoted message ("sdpanel setup: could not ..."), not a command
    parser = build_parser()
    for argv in _argv_variants(command):
        if argv == ["--help"] or not argv:
            continue
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                parser.parse_args(argv)
        except SystemExit:
            # A mention of a verb without its arguments (`sdpanel stop`) is fine; an
            # unknown verb, choice or option is a wrong direction.
            if "the following arguments are required" not in err.getvalue():
                pytest.fail(f"{where} tells users to run `sdpanel {command}`, which the CLI "
                            f"rejects: {err.getvalue().strip().splitlines()[-1]}")


def _code_reads_env(name: str, sources: str) -> bool:
    return bool(re.search(rf"""(environ|getenv)[^\n]{{0,40}}["']{name}["']|{name}\s*=|["']{name}["']""",
                          sources))


def test_every_environment_variable_named_in_a_message_is_read() -> None:
    settings_env = {row["env"] for row in Settings.schema()}
    code = {p: p.read_text() for p in _product_files() if p.suffix == ".py"}
    everything = "\n".join(code.values())
    named = {(p.relative_to(REPO).as_posix(), m) for p, text in code.items()
             for m in re.findall(r"\bSDPANEL_[A-Z_]+\b", text)}
    unknown = sorted((where, name) for where, name in named
                     if name not in settings_env and not _code_reads_env(name, everything))
    assert not unknown, f"messages name environment variables nothing reads: {unknown}"


def test_every_notebook_field_named_in_a_message_is_a_setting() -> None:
    # Cells tell users to tick e.g. CLEAN_LEFTOVERS: an UPPERCASE Settings field or secret.
    fields = {n.upper() for n in Settings.field_names()} | set(SECRET_NAMES)
    named = set()
    for path in (REPO / "sdpanel" / "cells").glob("*.py"):
        for m in re.findall(r"\b(?:set|tick|untick|turn on|turn off|with)\s+`?([A-Z][A-Z_]{3,})`?",
                            path.read_text()):
            named.add((path.name, m))
    unknown = sorted((w, n) for w, n in named if n not in fields and not n.startswith("SDPANEL_"))
    assert not unknown, f"cells name notebook fields that do not exist: {unknown}"
