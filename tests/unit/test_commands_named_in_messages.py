"""Every `sdpanel <verb>` a message, hint or panel names is a verb the CLI has (issue 12
item 7: the queue and the sidebar sent users to `sdpanel webui start`)."""

from __future__ import annotations

import re
from pathlib import Path

from sdpanel.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
_NAMED = re.compile(r"`sdpanel ([a-z][a-z-]*)\b(?!:)")


def _verbs() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return set(sub.choices)  # type: ignore[arg-type]


def test_every_named_verb_exists() -> None:
    verbs = _verbs()
    files = [*(ROOT / "sdpanel").rglob("*.py"), *(ROOT / "js" / "src").rglob("*.ts")]
    named = {(f.relative_to(ROOT).as_posix(), m.group(1)) for f in files
             for m in _NAMED.finditer(f.read_text(encoding="utf-8"))}
    assert named, "no command is named anywhere: the pattern is wrong"
    assert sorted((f, v) for f, v in named if v not in verbs) == []
