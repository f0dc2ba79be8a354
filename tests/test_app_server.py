"""The real ``archlab app`` server process: it always starts (also many at once beside a CPU hog),
a busy port is one error line, a non-loopback host needs the token the server prints."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from archlab.app.demo import make_demo_study

pytestmark = [pytest.mark.timeout(1500)]

#: launches of the start-up test, and how many run at once
LAUNCHES, AT_ONCE = 20, 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _archlab() -> list[str]:
    return [sys.executable, "-m", "archlab"]


def _stop(proc: subprocess.Popen) -> None:
    """Stop a process started with ``start_new_session`` (its whole group), then reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


def _health(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=3) as r:
            return r.read().strip() == b"ok"
    except OSError:
        return False


@contextlib.contextmanager
def cpu_hog(n: int = 2) -> Iterator[list[subprocess.Popen]]:
    """``n`` processes that burn a CPU each, always stopped on exit."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
             for _ in range(n)]
    try:
        yield procs
    finally:
        for p in procs:
            _stop(p)


def _launch_once(target: Path, log: Path, timeout: float = 240.0) -> tuple[bool, float, str]:
    """Start ``archlab app TARGET`` on a free port; (answered /_stcore/health, seconds, log)."""
    port = _free_port()
    t = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen([*_archlab(), "app", str(target), "--port", str(port)], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while time.monotonic() - t < timeout and proc.poll() is None:
            if _health(port):
                # a warm-up failure is not fatal, but the thread it runs in must not fail either
                time.sleep(0.5)
                return proc.poll() is None, time.monotonic() - t, log.read_text()
            time.sleep(0.25)
        return False, time.monotonic() - t, log.read_text()
    finally:
        _stop(proc)


@pytest.mark.slow
def test_the_app_starts_every_time_beside_a_cpu_hog(tmp_path):
    """20 launches, 5 at a time, while two processes burn both CPUs: every server answers
    ``/_stcore/health`` and none of them logs a traceback (the start-up import race showed as
    ``partially initialized module 'pandas'``)."""
    run = tmp_path / "runs" / "demo"
    run.mkdir(parents=True)
    make_demo_study(run / "study.db", "demo", 40, seed=3)
    logs = [tmp_path / f"app{i}.log" for i in range(LAUNCHES)]
    with cpu_hog(), ThreadPoolExecutor(AT_ONCE) as pool:
        results = list(pool.map(lambda log: _launch_once(tmp_path / "runs", log), logs))
    failed = [(i, log) for i, (ok, _s, log) in enumerate(results) if not ok or "Traceback" in log]
    seconds = sorted(s for _ok, s, _log in results)
    print(f"{LAUNCHES - len(failed)}/{LAUNCHES} healthy; seconds to health: median {seconds[len(seconds) // 2]:.1f}, "
          f"max {seconds[-1]:.1f}")
    assert not failed, "\n\n".join(f"launch {i}:\n{log[-2500:]}" for i, log in failed)
    for _ok, _s, log in results:
        assert "partially initialized" not in log and "skipped" not in log, log[-2500:]
