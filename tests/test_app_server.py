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
@pytest.mark.hog
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


def test_busy_port_is_one_error_line_before_any_url(tmp_path):
    run = tmp_path / "runs" / "demo"
    run.mkdir(parents=True)
    make_demo_study(run / "study.db", "demo", 5, seed=1)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        for host in ("127.0.0.1", "localhost", "0.0.0.0"):
            out = subprocess.run([*_archlab(), "app", str(tmp_path / "runs"), "--host", host, "--port", str(port)],
                                 capture_output=True, text=True, timeout=120)
            assert out.returncode == 2, (host, out.stderr)
            assert out.stderr.splitlines() == [f"archlab: error: port {port} on {host} is in use (another archlab "
                                               "app or server?); pick a free one with --port"], out.stderr
            assert out.stdout == "" and "http://" not in out.stderr


def test_check_port_passes_a_free_port_and_names_a_foreign_address():
    from archlab.cli.app import check_port
    from archlab.core.errors import ArchlabError

    port = _free_port()
    check_port("127.0.0.1", port)
    with socket.socket() as s:  # the check released the port again
        s.bind(("127.0.0.1", port))
    with pytest.raises(ArchlabError, match="not an address of this machine"):
        check_port("192.0.2.1", port)  # TEST-NET-1: never this machine's


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True),
                                                ("::1", True), ("[::1]", True), ("0.0.0.0", False), ("::", False),
                                                ("192.0.2.1", False), ("no-such-host.invalid", False)])
def test_loopback_hosts(host, loopback):
    from archlab.app.access import is_loopback

    assert is_loopback(host) is loopback


def test_token_only_off_loopback_unless_asked(run_cli, monkeypatch, tmp_path):
    from archlab.app.access import ENV_TOKEN

    db = tmp_path / "study.db"
    make_demo_study(db, "demo", 3, seed=1)
    monkeypatch.delenv(ENV_TOKEN, raising=False)
    code, out, _ = run_cli("app", str(db), "--print-command")
    assert code == 0 and ENV_TOKEN not in out
    tokens = set()
    for args in (["--host", "0.0.0.0"], ["--host", "0.0.0.0"], ["--token"]):
        code, out, _ = run_cli("app", str(db), "--print-command", *args)
        token = next(w for w in out.split() if w.startswith(ENV_TOKEN + "=")).split("=", 1)[1]
        assert code == 0 and len(token) >= 24
        tokens.add(token)
    assert len(tokens) == 3  # a new random token each time
    monkeypatch.setenv(ENV_TOKEN, "kept-across-restarts")
    code, out, _ = run_cli("app", str(db), "--print-command", "--host", "0.0.0.0")
    assert f"{ENV_TOKEN}=kept-across-restarts " in out
