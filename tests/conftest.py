"""Shared fixtures and settings for the test suite."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

# A shell that starts the suite in the background (`cmd &`, no job control) hands it SIGINT
# ignored, and every process it starts inherits that: the Ctrl-C tests' interrupts would be
# lost. Handle SIGINT here, so children start with the default action (and Python's handler).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("ARCHLAB_PROGRESS", "0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``scripts/test.sh``, ``--dist loadgroup``): the tests that share the
    PostgreSQL database (schema creation races) and those that run their own CPU hogs each on
    one worker, one at a time."""
    for item in items:
        for marker in ("postgres", "hog"):
            if item.get_closest_marker(marker):
                item.add_marker(pytest.mark.xdist_group(marker))


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


@pytest.fixture(params=["fast", "fallback"])
def optuna_path(request, monkeypatch):
    """Run the test on archlab's fast paths over Optuna internals and again on the public-API
    fallback (``archlab.search.optuna_compat``; the environment variable reaches workers)."""
    from archlab.search import optuna_compat

    optuna_compat.use_fallback(None)
    if request.param == "fallback":
        monkeypatch.setenv(optuna_compat.ENV_FALLBACK, "1")
    else:
        monkeypatch.delenv(optuna_compat.ENV_FALLBACK, raising=False)
    assert optuna_compat.fast() == (request.param == "fast")
    return request.param
