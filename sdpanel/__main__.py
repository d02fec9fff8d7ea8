"""``python -m sdpanel`` is the ``sdpanel`` command (for hosts where scripts are not on PATH)."""

from __future__ import annotations

import sys

from sdpanel.cli import main

if __name__ == "__main__":
    sys.exit(main())
