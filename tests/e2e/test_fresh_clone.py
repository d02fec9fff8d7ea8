"""The README's commands on a fresh machine: clone the repository into an empty folder (only
committed files travel) and run the set-up and a subset of the test command exactly as the
README writes them.

Opt-in with ``SDPANEL_FRESH_CLONE=1``: it creates a new virtual environment and installs
every dependency from the package registries (pip, npm), minutes of work that repeat what
CI already does. CI needs no second copy of it: ``.ci/run`` *is* this test on a fresh
clone (it runs ``make test`` there), so running it again nested inside ``make test``
would double CI's time without checking anything new. Run it before a release, or after
changing the Makefile, pyproject.toml or package.json.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ._harness import ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("SDPANEL_FRESH_CLONE") != "1",
                       reason="reinstalls everything from the registries: set SDPANEL_FRESH_CLONE=1 "
                              "(CI's .ci/run already runs `make test` on a fresh clone)"),
]

SUBSET = "tests/unit -q"


def readme_commands() -> list[str]:
    """The fenced commands of README's "The two commands" section, comments dropped."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README's 'The two commands' section has no bash block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()
            if line.split("#", 1)[0].strip()]


def test_readme_commands_on_a_fresh_clone(tmp_path: Path) -> None:
    assert shutil.which("git") and shutil.which("make")
    if not (ROOT / ".git").exists():
        pytest.skip(f"{ROOT} is not a git checkout")
    commands = readme_commands()
    assert commands == ["make lab", "make test"], commands
    clone = tmp_path / "sdpanel"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=300)
    # A clean user shell: no venv or PYTHONPATH of this test run leaks into the clone's.
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME") and not k.startswith(("SDPANEL_", "PYTEST_"))}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if "/.venv/" not in p)
    # `make lab` = set-up + JupyterLab (which never returns): its set-up half is `make setup`.
    setup = subprocess.run(["make", "setup"], cwd=clone, env=env, capture_output=True, text=True, timeout=1800)
    assert setup.returncode == 0, (setup.stdout[-3000:], setup.stderr[-3000:])
    assert (clone / ".venv" / "bin" / "sdpanel").exists()
    assert (clone / "sdpanel" / "static" / "app.js").is_file()
    # `make test` with the README's way of passing pytest arguments, on a quick subset.
    run = subprocess.run(["make", "test", f"PYTEST_ARGS={SUBSET}"], cwd=clone, env=env,
                         capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    assert re.search(r"\d+ passed", run.stdout), run.stdout[-2000:]
