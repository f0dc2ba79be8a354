"""``archlab demo``: every stage end to end (quick budgets), resumable, and the exported subnet
scores on its own exactly what the search recorded for it."""

import os
import subprocess

import pytest

from archlab.demo import run_demo
from archlab.search import load_trials, pareto_front


@pytest.mark.slow
def test_demo_end_to_end_then_resume(tmp_path, archlab_bin):
    lines: list[str] = []
    res = run_demo(tmp_path, quick=True, log=lines.append)
    text = "\n".join(lines)
    for stage in ("[1/6] space", "[2/6] training", "[3/6] profiling", "[4/6] latency predictor", "[5/6] search", "[6/6] exported"):
        assert stage in text
    run = tmp_path / "digits_cnn"
    for f in ("supernet", "latency.parquet", "predictors/latency.json", "study.db"):
        assert (run / f).exists(), f
    # the study holds what the demo reports, and the front it printed is the results API's
    trials = load_trials(res.storage, res.study_name)
    assert res.n_trials == int((trials["state"] == "COMPLETE").sum()) == 16
    front = pareto_front(trials)
    assert sorted(front["number"]) == sorted(res.front["number"])
    assert res.chosen_trial in set(front["number"])
    # far better than chance (10 classes) after 30 sandwich steps
    assert res.largest_accuracy > 0.5 and res.smallest_accuracy > 0.3
    # the exported module alone reproduces the accuracy the search measured with inherited weights
    recorded = float(front.set_index("number").loc[res.chosen_trial, "accuracy"])
    assert res.exported_accuracy == pytest.approx(recorded, abs=1e-9)
    assert (res.export_dir / "model.safetensors").is_file() and (res.export_dir / "config.json").is_file()
    # untrustworthy latency figures are warned about, in the log, and timings are reported
    from archlab.demo import trust_warnings

    assert res.warnings == trust_warnings(res.noise_floor_pct, res.predictor_mape)
    assert all(line in lines for line in res.warnings)
    assert set(res.stage_seconds) == {"space", "train", "profile", "predictor", "search", "export"}
    assert sum(res.stage_seconds.values()) == pytest.approx(res.seconds, rel=0.01) and res.cpu_seconds > 0

    # the same command again continues every stage: nothing is trained, profiled or searched twice
    proc = subprocess.run([*archlab_bin, "demo", "--quick", "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "ARCHLAB_PROGRESS": "0"})
    assert proc.returncode == 0, proc.stderr
    assert "resumed from step 30" in proc.stdout
    assert "16 complete trials" in proc.stdout
    assert "Traceback" not in proc.stderr and "ExperimentalWarning" not in proc.stderr
    assert len(load_trials(res.storage, res.study_name)) == 16


@pytest.mark.slow
def test_demo_bad_out_is_one_line_error(tmp_path, archlab_bin):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = subprocess.run([*archlab_bin, "demo", "--quick", "--out", str(blocker)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("archlab: error:")


@pytest.mark.parametrize(("noise", "mape", "expected"), [
    (2.0, 5.0, []),
    (39.6, 5.0, ["noise floor 39.6%"]),
    (3.0, 44.8, ["MAPE 44.8%"]),
    (39.6, 44.8, ["noise floor 39.6%", "MAPE 44.8%"]),
    (float("nan"), float("nan"), ["noise floor nan%", "MAPE nan%"]),
])
def test_untrustworthy_latency_figures_are_warned_with_what_to_do(noise, mape, expected):
    from archlab.demo import trust_warnings

    lines = trust_warnings(noise, mape)
    assert len(lines) == len(expected)
    for line, figure in zip(lines, expected):
        assert line.startswith("warning: ") and figure in line and "\n" not in line
        assert "archlab profile" in line  # says what to do


def test_a_busy_machine_is_named_before_the_demo_starts():
    from archlab.demo import busy_warning

    assert busy_warning(1.5, 2) is None and busy_warning(2.0, 2) is None
    line = busy_warning(17.2, 2)
    assert line.startswith("warning: ") and "load average 17.2 on 2 cores" in line and "quiet machine" in line
