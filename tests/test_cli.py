"""The command group itself."""

from __future__ import annotations

import subprocess
import sys


def test_help_lists_group():
    out = subprocess.run(
        [sys.executable, "-m", "samix_hub", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert "samix-hub" in out.stdout and "Examples" in out.stdout


def test_unknown_command_fails():
    out = subprocess.run(
        [sys.executable, "-m", "samix_hub", "frobnicate"], capture_output=True, text=True
    )
    assert out.returncode != 0 and "No such command" in out.stderr
