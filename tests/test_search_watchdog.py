"""--timeout holds with one worker too (archlab.search.watchdog): no parent process there."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import optuna
import pytest

SCRIPT = textwrap.dedent(
    """
    import signal, sys, time
    from archlab.search import run_search
    from archlab.spaces import Choice, SearchSpace

    space = SearchSpace("w", a=Choice(*range(50)))
    calls = []

    def size(arch):
        calls.append(arch)
        if len(calls) == 3:
            if sys.argv[2] == "native":  # as if stuck in native code: no Python handler runs here
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            time.sleep(600)
        return float(arch["a"])

    run_search(space, {"size": ("min", size)}, storage=sys.argv[1], study_name="w", seed=0,
               sampler="random", timeout=2, n_trials=None)
    print("returned", len(calls))
    """
)


@pytest.mark.parametrize("mode", ["python", "native"])
def test_one_worker_stuck_in_a_trial_still_ends_at_its_timeout(tmp_path, mode):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    url = f"sqlite:///{tmp_path / 's.db'}"
    start = time.monotonic()
    proc = subprocess.run([sys.executable, str(script), url, mode], capture_output=True, text=True, timeout=120)
    took = time.monotonic() - start
    # deadline 2 s + grace 2 s (+ 5 s more when stuck in native code), plus interpreter start-up
    assert took < 60, took
    assert "Traceback" not in proc.stderr, proc.stderr
    trials = optuna.load_study(study_name="w", storage=url).get_trials(deepcopy=False)
    stuck = trials[2]
    assert stuck.state == optuna.trial.TrialState.FAIL
    assert "past the search's deadline" in stuck.user_attrs["fail_reason"]
    if mode == "python":  # interrupted where Python runs: the search returns as at any timeout
        assert proc.returncode == 0, proc.stderr
        assert "returned 3" in proc.stdout
    else:  # stuck: failed and queued again by the watchdog, one line, exit 2
        assert proc.returncode == 2, proc.stderr
        lines = [ln for ln in proc.stderr.strip().splitlines() if not ln.startswith("[I ")]  # Optuna's own log
        assert len(lines) == 1 and lines[0].startswith("archlab: error: search stopped at its timeout"), lines
        assert f"trial {stuck.number} was failed and queued again" in lines[0]
        waiting = [t for t in trials if t.state == optuna.trial.TrialState.WAITING]
        assert [t.params for t in waiting] == [stuck.params]
