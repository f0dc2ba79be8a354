"""Shared fixtures and settings for the test suite."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("ARCHLAB_PROGRESS", "0")


@pytest.fixture
def run_cli(capsys):
    """Run ``archlab ...`` in-process; returns (exit code, stdout, stderr)."""
    from archlab.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture
def archlab_bin() -> list[str]:
    """Command prefix that runs the installed command line in a fresh process."""
    return [sys.executable, "-m", "archlab"]


@pytest.fixture
def one_thread():
    """One intra-op torch thread for the test (small ops run far faster so on a loaded machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
