"""Run the ``samix-hub`` entry point in-process, as a user's shell would (exit code, streams)."""

from __future__ import annotations

import pytest

from samix_hub.cli.main import main


def run_cli(args: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``samix-hub ARGS`` -> (exit code, stdout, stderr); user errors exit non-zero."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
