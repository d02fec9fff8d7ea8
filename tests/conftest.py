"""Session-wide guard: no planted token may appear in any output of the test run.

At start-up every secret environment variable gets a unique planted value, so any code
path that leaks a token (a log line, an error message, a URL, a command line, a saved
file) leaks a string we can grep for. Every test report's captured stdout/stderr/log and
failure text is scanned, and so is every file under tests/artifacts/ at the end; a hit
fails the session and names the test. Tests needing "no token" monkeypatch them away.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

SECRET_VARS = ("CIVITAI_TOKEN", "HF_TOKEN", "NGROK_TOKEN", "ZROK_TOKEN")
ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
_MAX_SCAN_BYTES = 64 * 1024**2  # larger artifacts (videos, archives) are not text output


def _plant() -> dict[str, str]:
    # Fresh values per process: a nested pytest run (pytester) plants its own, so the
    # outer guard only reacts to leaks of the outer values.
    run = uuid.uuid4().hex[:12]
    planted = {}
    for var in SECRET_VARS:
        value = f"sdptest-{var.split('_')[0].lower()}-PLANTED-{run}"
        os.environ[var] = value
        planted[var] = value
    return planted


PLANTED: dict[str, str] = _plant()
# Children get an allow-listed environment (sdpanel._childenv); the stub WebUIs and tunnel
# tools are steered by STUB_* variables, passed through the documented user knob.
os.environ.setdefault("SDPANEL_CHILD_ENV", "STUB_*")
# Stub WebUIs (tests/fixtures/stub_webui.py) run on the test interpreter, named the way a
# user names an existing Python; the real-WebUI tier (tests/realwebui) sets its own.
os.environ.setdefault("SDPANEL_WEBUI_PYTHON", sys.executable)
_offenders: list[str] = []
_offending_ids: set[str] = set()


def _leaks(text: str) -> list[str]:
    return [var for var, value in PLANTED.items() if value in text]


@pytest.fixture
def planted_tokens() -> dict[str, str]:
    """The planted secret values by variable name (also set in os.environ)."""
    return dict(PLANTED)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.nodeid in _offending_ids:  # later phases repeat the earlier captured output
        return
    texts = [content for _title, content in report.sections]
    if report.longrepr is not None:
        texts.append(str(report.longrepr))
    for text in texts:
        leaked = _leaks(text)
        if leaked:
            _offending_ids.add(report.nodeid)
            _offenders.append(f"{report.nodeid} ({report.when}): output contains planted "
                              f"{', '.join(leaked)}")
            return


def _scan_artifacts() -> None:
    if not ARTIFACTS_DIR.is_dir():
        return
    needles = {var: value.encode() for var, value in PLANTED.items()}
    for path in sorted(ARTIFACTS_DIR.rglob("*")):
        try:
            if not path.is_file() or path.is_symlink() or path.stat().st_size > _MAX_SCAN_BYTES:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        leaked = [var for var, needle in needles.items() if needle in data]
        if leaked:
            _offenders.append(f"artifact {path}: contains planted {', '.join(leaked)}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _scan_artifacts()
    if _offenders:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _offenders:
        terminalreporter.section("PLANTED TOKEN LEAKED", sep="!", red=True, bold=True)
        for line in _offenders:
            terminalreporter.write_line(line, red=True)
        terminalreporter.write_line("A secret reached an output: pass it through "
                                    "sdpanel.settings.redact() before it is printed or logged.")
