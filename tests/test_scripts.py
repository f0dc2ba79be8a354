"""``scripts/test.sh`` stops the PostgreSQL server it started (and only that one), and the
repository stands alone (no links outside it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FAKE_PG = """#!/usr/bin/env bash
# a stand-in for scripts/postgres.sh: state in $PG_STATE
case "${1:-}" in
  status) [ -f "$PG_STATE/running" ]; exit ;;
  stop) echo stop >> "$PG_STATE/log"; rm -f "$PG_STATE/running"; exit ;;
esac
echo start >> "$PG_STATE/log"; touch "$PG_STATE/running"; echo postgresql+psycopg2://fake/db
"""

FAKE_PYTHON = """#!/usr/bin/env bash
echo "url=$ARCHLAB_TEST_POSTGRES_URL args=$* omp=${OMP_NUM_THREADS:-unset}"
[ -n "${FAKE_SLEEP:-}" ] && { touch "$PG_STATE/tests-running"; sleep "$FAKE_SLEEP"; }
exit "${FAKE_RC:-0}"
"""


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "test.sh", tmp_path / "scripts" / "test.sh")
    for name in ("setup.sh", "system-deps.sh"):
        (tmp_path / "scripts" / name).write_text("exit 0\n")
    (tmp_path / "scripts" / "postgres.sh").write_text(FAKE_PG)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    py = tmp_path / ".venv" / "bin" / "python"
    py.write_text(FAKE_PYTHON)
    py.chmod(0o755)
    (tmp_path / "state").mkdir()
    return tmp_path


def _run(repo, running=False, rc=0, url=None, omp=None):
    if running:
        (repo / "state" / "running").touch()
    env = {k: v for k, v in os.environ.items() if k not in ("ARCHLAB_TEST_POSTGRES_URL", "OMP_NUM_THREADS")}
    if omp:
        env["OMP_NUM_THREADS"] = omp
    env.update(PG_STATE=str(repo / "state"), FAKE_RC=str(rc))
    if url:
        env["ARCHLAB_TEST_POSTGRES_URL"] = url
    proc = subprocess.run(["bash", str(repo / "scripts" / "test.sh"), "-q"], env=env, capture_output=True,
                          text=True, timeout=60)
    log = (repo / "state" / "log").read_text().split() if (repo / "state" / "log").exists() else []
    return proc, log, (repo / "state" / "running").exists()


@pytest.mark.parametrize("rc", [0, 1])
def test_stops_the_server_it_started_whatever_the_tests_did(repo, rc):
    proc, log, running = _run(repo, rc=rc)
    assert proc.returncode == rc and "url=postgresql+psycopg2://fake/db args=-m pytest -n 2 --dist loadgroup -q omp=1" in proc.stdout
    assert log == ["start", "stop"] and not running


def test_two_test_workers_unless_told(repo, monkeypatch):
    monkeypatch.setenv("ARCHLAB_TEST_WORKERS", "0")  # one process
    proc, _, _ = _run(repo)
    assert proc.returncode == 0 and "args=-m pytest -n 0 --dist loadgroup -q omp=unset" in proc.stdout


def test_one_torch_thread_per_test_worker_unless_told(repo):
    assert "-n 2 --dist loadgroup -q omp=1" in _run(repo)[0].stdout  # two workers' pools on two cores
    assert "-n 2 --dist loadgroup -q omp=3" in _run(repo, omp="3")[0].stdout  # the user's setting wins


def test_ctrl_c_stops_the_server_too(repo):
    import signal
    import time

    env = {k: v for k, v in os.environ.items() if k != "ARCHLAB_TEST_POSTGRES_URL"}
    env.update(PG_STATE=str(repo / "state"), FAKE_SLEEP="30")
    proc = subprocess.Popen(["bash", str(repo / "scripts" / "test.sh")], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not (repo / "state" / "tests-running").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    assert proc.wait(timeout=20) == 130
    assert (repo / "state" / "log").read_text().split() == ["start", "stop"]
    assert not (repo / "state" / "running").exists()


def test_leaves_a_server_it_did_not_start(repo):
    proc, log, running = _run(repo, running=True)
    assert proc.returncode == 0 and "stop" not in log and running


def test_given_url_starts_and_stops_nothing(repo):
    proc, log, running = _run(repo, url="postgresql+psycopg2://mine/db")
    assert proc.returncode == 0 and "url=postgresql+psycopg2://mine/db" in proc.stdout
    assert log == [] and not running


def test_repository_links_nothing_outside_itself():
    for path in [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *(ROOT / "scripts").glob("*.sh")]:
        text = path.read_text(encoding="utf-8")
        assert "../shared" not in text and "DEVELOPERS.md" not in text, path
    for target in re.findall(r"\]\(([^)#:]+)\)", (ROOT / "README.md").read_text(encoding="utf-8")):
        assert (ROOT / target).exists(), target
