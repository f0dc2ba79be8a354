"""Soak: `archlab search --workers 2` beside a CPU hog, a worker killed with kill -9 and a Ctrl-C
in the middle, then the same command again: exactly the trial count, no orphan process, no hang."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import psutil
import pytest

TOTAL = 30


@contextlib.contextmanager
def cpu_hog(n: int = 2) -> Iterator[list[subprocess.Popen]]:
    """``n`` busy processes (``yes > /dev/null``), always ended."""
    hogs = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(n)]
    try:
        yield hogs
    finally:
        for h in hogs:
            h.kill()
            h.wait()


def _complete(db: Path) -> int:
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0])
    except sqlite3.Error:
        return -1


def _wait(cond, seconds: float, what: str) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _living(pids: set[int]) -> list[int]:
    out = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
    return out


@pytest.mark.slow
@pytest.mark.hog
@pytest.mark.timeout(900)
def test_soak_two_workers_kill_9_ctrl_c_and_rerun(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    exp = tmp_path / "exp.py"
    exp.write_text(textwrap.dedent(f"""
        import os, time
        from archlab import Experiment
        from archlab.spaces.library import mlp_space
        from archlab.supernets.tasks import DigitsTask

        def size(a):
            mark = os.path.join({str(marks)!r}, str(os.getpid()))
            open(mark, "w").write(a.key)
            open(mark + ".in", "w").close()  # inside the objective
            time.sleep(0.3)
            os.remove(mark + ".in")
            return float(sum(layer["width"] for layer in a["layers"]))

        exp = Experiment("soak", mlp_space(n_layer=(1, 4), width=(16, 32, 64, 128, 256)), family="mlp",
                         task=DigitsTask(), runs_dir={str(tmp_path / 'runs')!r},
                         search={{"sampler": "random", "seed": 0, "heartbeat_interval": 1, "grace_period": 3,
                                 "objectives": {{"size": ("min", size), "depth": ("max", lambda a: float(a["n_layer"]))}}}})
    """))
    db = tmp_path / "runs" / "soak" / "study.db"
    cmd = [sys.executable, "-m", "archlab", "search", str(exp), "--workers", "2", "--trials", str(TOTAL)]
    env = {**os.environ, "ARCHLAB_PROGRESS": "0"}
    seen: set[int] = set()
    with cpu_hog(2):
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
        try:
            workers: list[int] = []

            def two_working() -> bool:
                nonlocal workers
                kids = psutil.Process(p.pid).children(recursive=True)
                seen.update(k.pid for k in kids)
                workers = [k.pid for k in kids if (marks / str(k.pid)).exists()]
                return len(workers) == 2 and _complete(db) >= 3

            _wait(two_working, 400, "two workers with trials done")
            victim = workers[0]
            _wait(lambda: (marks / f"{victim}.in").exists(), 60, "the worker inside a trial")
            os.kill(victim, signal.SIGKILL)  # a worker dies mid-trial
            done = _complete(db)
            _wait(lambda: _complete(db) >= done + 3, 120, "the other worker to go on")
            seen.update(k.pid for k in psutil.Process(p.pid).children(recursive=True))
            t0 = time.monotonic()
            os.killpg(p.pid, signal.SIGINT)  # Ctrl-C
            _, err = p.communicate(timeout=60)
            took = time.monotonic() - t0
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        assert p.returncode == 130, err
        assert "Traceback" not in err and "archlab: interrupted" in err, err
        assert took < 15, took
        time.sleep(1.0)
        assert _living(seen) == [], "orphan processes"
        assert _complete(db) < TOTAL
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"{TOTAL} complete trials" in again.stdout
    study = optuna.load_study(study_name="soak", storage=f"sqlite:///{db}")
    trials = study.get_trials()
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == TOTAL
    assert not [t for t in trials if t.state.name in ("RUNNING", "WAITING")]
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert all(t.user_attrs.get("arch") and t.user_attrs.get("metrics") for t in complete)
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert failed and all(t.user_attrs.get("fail_reason") for t in failed)
    killed = [t for t in failed if "its worker died" in t.user_attrs["fail_reason"]]
    assert len(killed) == 1  # the kill -9: failed by the parent at once ...
    # ... and queued again with its parameters; that retry ran to the end, unless the Ctrl-C
    # came while it was running (then it failed as interrupted, with that reason)
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == killed[0].number]
    assert len(retried) == 1 and retried[0].params == killed[0].params
    assert retried[0].state.name == "COMPLETE" or "interrupted" in retried[0].user_attrs.get("fail_reason", "")
