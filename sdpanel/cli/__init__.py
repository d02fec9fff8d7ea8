"""The ``sdpanel`` command. Sub-commands are discovered from ``sdpanel/cli/cmd_*.py``:
each module defines ``register(subparsers)`` that adds its parser(s) and sets
``func=callable(args) -> int``. Adding a verb is adding a file."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


class _VersionAction(argparse.Action):
    """``--version``: reads the installed version only when asked (importlib.metadata
    costs tens of milliseconds of start-up every other command would pay)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_args: object) -> None:
        import sdpanel

        print(f"sdpanel {sdpanel.__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdpanel",
        description="Stable Diffusion from a notebook: status, notebook, lab and more.",
    )
    parser.add_argument("--version", action=_VersionAction)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("cmd_"):
            module = importlib.import_module(f"{__name__}.{info.name}")
            module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code. Expected failures print their redacted message
    (``error: ...``, every line) and return 1; ``SDPANEL_DEBUG=1`` shows the traceback instead.
    Run as the process's command (no ``argv``: the ``sdpanel`` script, ``python -m
    sdpanel``), a command that sets ``exit_fast`` ends the process as soon as it returns
    (see :func:`_exit_now`); called with ``argv`` (tests, other code) it always returns."""
    parser = build_parser()
    args = parser.parse_args(_glue_dash_values(list(sys.argv[1:] if argv is None else argv)))
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        rc = int(func(args) or 0)
        if argv is None and getattr(args, "exit_fast", False):
            _exit_now(rc)
        return rc
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("SDPANEL_DEBUG") == "1":
            raise
        from sdpanel.settings import redact

        # The whole message: a cause often follows on the next lines ("Last log lines:").
        text = redact(str(exc)).strip() or type(exc).__name__
        print(f"error: {text}", file=sys.stderr)
        return 1


# Options whose value is a command line of its own (`--args "--lowvram --cpu"`): argparse
# takes a value starting with "-" for an option, so it is glued on as --args=VALUE.
_COMMAND_LINE_OPTIONS = ("--args",)


def _glue_dash_values(argv: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in _COMMAND_LINE_OPTIONS and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def _exit_now(rc: int) -> None:
    """End the process without the interpreter's teardown. After a download every file is
    closed, renamed and journalled and every child stopped; what is left is tearing down
    some 300 modules (aiohttp, asyncio ...), 40–60 ms between the verified file and the
    prompt. Output and log handlers are flushed first."""
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            rc = rc or 1  # as the interpreter does when stdout cannot be flushed
    os._exit(rc)
