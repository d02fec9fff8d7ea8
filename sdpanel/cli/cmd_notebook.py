"""``sdpanel notebook [--check] [--output PATH]``: write or check notebook/SDPanel.ipynb."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "notebook", help="write notebook/SDPanel.ipynb from the package (or check it)")
    p.add_argument("--check", action="store_true",
                   help="exit 1 and show the difference when the file is not what the "
                        "generator produces")
    p.add_argument("--output", metavar="PATH", type=Path,
                   help="notebook file (default: the checkout's notebook/SDPanel.ipynb)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # nbformat pulls in jsonschema (~1 s): import it only for this verb, not on every CLI start.
    from sdpanel.notebook import check_notebook, write_notebook

    if args.check:
        difference = check_notebook(args.output)
        if difference is None:
            print("notebook is up to date")
            return 0
        print(difference, file=sys.stderr)
        print("notebook differs from the generator: run `sdpanel notebook` to rewrite it",
              file=sys.stderr)
        return 1
    path = write_notebook(args.output)
    print(f"wrote {path}")
    return 0
