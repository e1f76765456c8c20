"""Reading what a running `agenttasks up` printed."""

from __future__ import annotations

import subprocess
from pathlib import Path


def banner_shown(process: subprocess.Popen[bytes], log: Path) -> bool:
    """Whether `up` has printed its banner (it is ready); fails at once if it exited instead."""
    assert process.poll() is None, log.read_text()
    return "Press Ctrl-C to stop." in log.read_text()
