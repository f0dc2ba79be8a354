"""Fault injection, end to end: kill -9 and Ctrl-C of training (bit-exact resume), two
trainers on one run folder, a full disk while saving checkpoints, tables and predictors, and
steps with NaN gradients. The trainers here are real ``archlab train`` processes."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from archlab.cli import main
from archlab.core.errors import ArchlabError
from archlab.spaces.library import mlp_space
from archlab.supernets import MLPNet
from archlab.supernets.tasks import DigitsTask
from archlab.supernets.training import checkpoint as ckpt
from archlab.supernets.training.runguard import (
    ConfigMismatchError,
    RunLock,
    RunLockedError,
    first_non_finite,
)
from archlab.supernets.training.strategies import STRATEGIES
from archlab.supernets.training.trainer import TrainConfig, train

SPACE = mlp_space("fault_mlp", n_layer=(1, 2), width=(16, 32))

# an experiment file whose training is slow enough to be caught mid-run (ARCHLAB_SLOW_STEP
# seconds of sleep per step after the first ARCHLAB_SLOW_AFTER), and whose "poison" strategy makes chosen steps' gradients NaN
# while the loss stays finite (0 * sqrt(0) has value 0 and gradient 0 * inf = NaN)
EXPERIMENT = textwrap.dedent('''
    import os, time
    import numpy as np
    from archlab import Experiment
    from archlab.spaces.library import mlp_space
    from archlab.supernets.training.strategies import Strategy, register_strategy, STRATEGIES
    from archlab.supernets.tasks import DigitsTask
    from archlab.supernets.training.config import TrainConfig

    if "poison" not in STRATEGIES:
        @register_strategy("poison")
        class Poison(Strategy):
            def __init__(self, space, bad=()):
                super().__init__(space)
                self.bad, self.calls = set(bad), 0

            def archs(self, rng):
                return [self.space.sample(rng)]

            def step(self, ctx, archs):
                self.calls += 1
                if self.calls > int(os.environ.get("ARCHLAB_SLOW_AFTER", "0")):
                    time.sleep(float(os.environ.get("ARCHLAB_SLOW_STEP", "0")))
                logits = ctx.forward(archs[0])
                loss = ctx.loss(logits)
                if self.calls in self.bad:
                    s = logits.sum()
                    loss = loss + 0.0 * (s - s.detach()).sqrt()
                ctx.backward(loss)
                return {"loss": float(loss.detach())}

    experiment = Experiment(
        name="faulty", space=mlp_space("fault_mlp", n_layer=(1, 2), width=(16, 32)), family="mlp",
        task=DigitsTask(), supernet_args={"sharing": "entangled"},
        train=TrainConfig(steps=@STEPS@, batch_size=32, lr=@LR@, seed=@SEED@, checkpoint_every=2, log_every=1,
                          strategy="poison", strategy_options={"bad": @BAD@}, num_threads=1, device="cpu",
                          max_nonfinite_steps=@MAXBAD@),
    )
''')

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "ARCHLAB_PROGRESS": "0", "OMP_NUM_THREADS": "1"}


def write_experiment(folder: Path, steps: int = 12, lr: float = 0.01, seed: int = 0, bad: tuple = (),
                     maxbad: int = 10, name: str = "exp.py") -> Path:
    text = (EXPERIMENT.replace("@STEPS@", str(steps)).replace("@LR@", repr(lr)).replace("@SEED@", str(seed))
            .replace("@BAD@", repr(list(bad))).replace("@MAXBAD@", str(maxbad)))
    path = folder / name
    path.write_text(text)
    return path


def archlab(*args: str, slow: float = 0.0, after: int = 0, **kw) -> subprocess.Popen:
    env = {**ENV, "ARCHLAB_SLOW_STEP": str(slow), "ARCHLAB_SLOW_AFTER": str(after)}
    return subprocess.Popen([sys.executable, "-m", "archlab", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, **kw)


def wait_for_checkpoint(folder: Path, step: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Block until ``folder/ckpt.pt`` holds at least ``step`` steps (the trainer is mid-run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"trainer ended early: {proc.communicate()}")
        path = folder / "ckpt.pt"
        if path.is_file():
            try:
                if ckpt.read_checkpoint(path)["step"] >= step:
                    return
            except ArchlabError:
                pass  # being replaced right now
        time.sleep(0.1)
    raise AssertionError("no checkpoint in time")


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 12-step run of the experiment: the weights every resumed run must match."""
    folder = tmp_path_factory.mktemp("ref")
    exp = write_experiment(folder)
    proc = subprocess.run([sys.executable, "-m", "archlab", "train", str(exp), "--out", str(folder / "run")],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return exp, weights(folder / "run" / "supernet")


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# kill -9, Ctrl-C, a second trainer ------------------------------------------------------
@pytest.mark.slow
def test_kill_9_mid_run_then_resume_is_bit_exact_and_frees_the_lock(reference, tmp_path):
    exp, ref = reference
    out = tmp_path / "run"
    first = archlab("train", str(exp), "--out", str(out), slow=5.0, after=4)
    try:
        wait_for_checkpoint(out / "supernet", 4, first)
        # a second trainer on the same folder: refused at once, naming the holder
        second = subprocess.run([sys.executable, "-m", "archlab", "train", str(exp), "--out", str(out)],
                                env=ENV, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("archlab: error:"), second.stderr
        assert f"pid {first.pid} on " in lines[0] and "another archlab trainer" in lines[0]
        os.killpg(first.pid, signal.SIGKILL)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.communicate()
    assert first.returncode == -signal.SIGKILL
    assert not (out / "supernet" / "model.safetensors").exists()  # it really died mid-run
    # the kernel dropped the dead process's lock: the resume needs no clean-up
    again = subprocess.run([sys.executable, "-m", "archlab", "train", str(exp), "--out", str(out)],
                           env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resumed from step" in again.stdout
    assert_same(weights(out / "supernet"), ref)


@pytest.mark.slow
def test_ctrl_c_mid_run_exits_130_and_resume_is_bit_exact(reference, tmp_path):
    exp, ref = reference
    out = tmp_path / "run"
    proc = archlab("train", str(exp), "--out", str(out), slow=5.0, after=2)
    try:
        wait_for_checkpoint(out / "supernet", 2, proc)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "archlab: interrupted", err
    assert "Traceback" not in err
    step = ckpt.read_checkpoint(out / "supernet" / "ckpt.pt")["step"]
    assert 2 <= step < 12
    again = subprocess.run([sys.executable, "-m", "archlab", "train", str(exp), "--out", str(out)],
                           env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"resumed from step {step}" in again.stdout
    assert_same(weights(out / "supernet"), ref)


def test_the_lock_is_held_by_a_live_process_only(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from archlab.supernets.training.runguard import RunLock;"
         "l = RunLock(sys.argv[1]); l.acquire(); print('locked', flush=True); time.sleep(60)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=rf"pid {holder.pid} on \S+\)"):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    # free again once the holder died, and exclusive within one process too
    with RunLock(tmp_path), pytest.raises(RunLockedError):
        RunLock(tmp_path).acquire()


def test_resume_with_changed_settings_is_refused_naming_the_fields(tmp_path, capsys):
    exp = write_experiment(tmp_path, steps=4)
    out = str(tmp_path / "run")
    assert main(["train", str(exp), "--out", out]) == 0
    changed = write_experiment(tmp_path, steps=4, lr=0.02, seed=3, name="changed.py")
    capsys.readouterr()
    assert main(["train", str(changed), "--out", out, "--steps", "6"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("archlab: error:") and len(err.splitlines()) == 1
    assert "lr=0.01 (now 0.02)" in err and "seed=0 (now 3)" in err and "--force-config" in err
    assert "steps" not in err.split("settings:")[1]  # more steps is a normal resume
    assert main(["train", str(exp), "--out", out, "--steps", "6"]) == 0  # same settings: fine
    assert main(["train", str(changed), "--out", out, "--steps", "8", "--force-config"]) == 0
    body = ckpt.read_checkpoint(Path(out) / "supernet" / "ckpt.pt")
    assert body["step"] == 8 and json.loads(body["train_config"])["lr"] == 0.02


# NaN gradients ------------------------------------------------------------------------
@pytest.fixture
def poison(tmp_path_factory):
    """The experiment file's "poison" strategy, registered in this process."""
    from archlab.loading import load_module

    STRATEGIES.pop("poison", None)
    load_module(write_experiment(tmp_path_factory.mktemp("poison")))
    yield "poison"
    STRATEGIES.pop("poison", None)


def _cfg(**kw) -> TrainConfig:
    base = dict(steps=8, batch_size=32, lr=1e-2, checkpoint_every=2, log_every=1, num_threads=1, device="cpu")
    return TrainConfig(**{**base, **kw})


def _net() -> MLPNet:
    torch.manual_seed(0)
    return MLPNet(SPACE, in_features=64, num_classes=10, sharing="entangled")


def test_nan_gradient_steps_are_skipped_counted_and_logged(poison, tmp_path, caplog):
    task = DigitsTask()
    seen = []
    net = _net()
    with caplog.at_level(logging.WARNING, logger="archlab.train"):
        train(net, task, _cfg(strategy=poison, strategy_options={"bad": [3, 4]}), tmp_path,
              on_step=lambda s, a, logged: seen.append(logged))
    assert [r["skipped_steps"] for r in seen] == [0, 0, 1, 2, 2, 2, 2, 2]
    assert [math_isnan(r["grad_norm"]) for r in seen] == [False, False, True, True, False, False, False, False]
    assert len([r for r in caplog.records if "step skipped" in r.getMessage()]) == 2
    assert "step 4: gradient norm is nan; step skipped (2 in a row, 2 in all)" in caplog.text
    for v in net.state_dict().values():
        assert torch.isfinite(v).all()
    logged = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped_steps"] for r in logged if "eval" not in r][-1] == 2
    body = ckpt.read_checkpoint(tmp_path / "ckpt.pt")
    assert body["skipped_steps"] == 2 and body["step"] == 8
    # a skipped step leaves weights and optimizer as they were: 2 good steps then 2 skipped
    # ones end where 2 good steps end (constant learning rate: the schedule does not differ)
    clean = _net()
    train(clean, task, _cfg(steps=2, strategy=poison, schedule="constant"), None)
    cut = _net()
    train(cut, task, _cfg(steps=4, strategy=poison, strategy_options={"bad": [3, 4]}, schedule="constant"), None)
    for a, b in zip(clean.state_dict().values(), cut.state_dict().values()):
        assert torch.equal(a, b)


def math_isnan(x: float) -> bool:
    return bool(np.isnan(x))


def test_too_many_nan_steps_in_a_row_stop_and_keep_the_good_checkpoint(poison, tmp_path):
    task = DigitsTask()
    cfg = _cfg(strategy=poison, strategy_options={"bad": [5, 6, 7, 8]}, max_nonfinite_steps=2)
    with pytest.raises(ArchlabError, match=r"3 consecutive steps with NaN/inf gradients \(up to step 7; "
                                           r"TrainConfig.max_nonfinite_steps=2\)"):
        train(_net(), task, cfg, tmp_path)
    body = ckpt.read_checkpoint(tmp_path / "ckpt.pt")
    assert body["step"] == 6 and body["skipped_steps"] == 2  # written after steps 5, 6 were skipped
    assert first_non_finite(body['model']) is None and first_non_finite(body['optimizer']) is None
    net = _net()
    ckpt.load_model_state(net, body, "ckpt.pt")  # the resume point is usable


def test_a_checkpoint_with_nan_tensors_never_replaces_a_good_one(tmp_path):
    net = _net()
    path = tmp_path / "ckpt.pt"
    payload = {"net_config": net.config(), "model": net.state_dict(), "optimizer": {}, "step": 1}
    ckpt.save_checkpoint(path, payload)
    good = path.read_bytes()
    with torch.no_grad():
        next(net.parameters())[0, 0] = float("nan")
    with pytest.raises(ckpt.NonFiniteError, match=r"ckpt\.pt: not written: model tensor .*weight holds NaN or inf"):
        ckpt.save_checkpoint(path, {**payload, "model": net.state_dict(), "step": 2})
    opt_state = {"state": {0: {"exp_avg": torch.tensor([1.0, float("inf")])}}}
    with pytest.raises(ckpt.NonFiniteError, match=r"optimizer tensor state\.0\.exp_avg"):
        ckpt.save_checkpoint(path, {**payload, "model": _net().state_dict(), "optimizer": opt_state})
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # no temporary left
    # a NaN checkpoint made elsewhere is refused when loaded
    bad = {**ckpt.read_checkpoint(path), "model": net.state_dict()}
    with pytest.raises(ckpt.CheckpointError, match="holds NaN or inf; this checkpoint cannot be used"):
        ckpt.load_model_state(_net(), bad, "ckpt.pt")


def test_nan_gradients_through_the_cli_give_one_line_and_exit_2(tmp_path, capsys):
    exp = write_experiment(tmp_path, steps=8, bad=(3, 4, 5), maxbad=1)
    assert main(["train", str(exp), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("archlab: error: training diverged: 2 consecutive steps with NaN/inf gradients")
    assert ckpt.read_checkpoint(tmp_path / "run" / "supernet" / "ckpt.pt")["step"] == 2


# a full disk ----------------------------------------------------------------------------
def _disk_full(monkeypatch, after_bytes: int = 0, only: str = "") -> None:
    """Make file writes of archlab's atomic writer (to temporaries whose name contains
    ``only``) fail with ENOSPC past ``after_bytes``, as a full disk does."""
    import archlab.core.io as io_mod

    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fh):
            self.fh, self.n = fh, 0
            self.name = os.readlink(f"/proc/self/fd/{fh.fileno()}")

        def write(self, data):
            self.n += len(data)
            if self.n > after_bytes and only in os.path.basename(self.name):
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.fh.write(data)

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.fh.__exit__(*exc)

    monkeypatch.setattr(io_mod.os, "fdopen", lambda *a, **k: Full(real_fdopen(*a, **k)))


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys):
    exp = write_experiment(tmp_path, steps=4)
    out = tmp_path / "run"
    assert main(["train", str(exp), "--out", str(out)]) == 0
    folder = out / "supernet"
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != ".lock"}
    _disk_full(monkeypatch, after_bytes=100, only=".ckpt.pt.")
    capsys.readouterr()
    assert main(["train", str(exp), "--out", str(out), "--steps", "6"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("archlab: error:") and "No space left on device" in err[0]
    assert f"cannot write {folder / 'ckpt.pt'}" in err[0] and "the previous file (if any) is kept" in err[0]
    for name in ("ckpt.pt", "model.safetensors", "config.json"):
        assert (folder / name).read_bytes() == before[name], name
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    assert main(["train", str(exp), "--out", str(out), "--steps", "6"]) == 0  # space again: it goes on
    assert ckpt.read_checkpoint(folder / "ckpt.pt")["step"] == 6


def test_disk_full_while_saving_a_table_or_predictor_keeps_the_previous_file(tmp_path, monkeypatch, capsys):
    import pandas as pd

    from archlab.predictors import LatencyPredictor
    from archlab.predictors.table import LatencyTable

    rng = np.random.default_rng(0)
    space = mlp_space("table_mlp", n_layer=(1, 3), width=(16, 32, 64))
    archs = space.sample_many(30, seed=0)
    table = LatencyTable(tmp_path / "latency.parquet", space)
    rows = [{"kind": "arch", "target": "cpu", "arch": a.to_json(), "latency_ms": float(1 + rng.random())}
            for a in archs]
    table.append(rows[:20])
    p = LatencyPredictor(space, model="ridge", seed=0).fit(archs, [r["latency_ms"] for r in rows], holdout=0.2)
    pred_path = tmp_path / "latency.json"
    p.save(pred_path)
    saved = {f: f.read_bytes() for f in (table.path, pred_path, pred_path.with_suffix(".safetensors"))}
    _disk_full(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        table.append(rows[20:])
    with pytest.raises(OSError, match="No space left"):
        LatencyPredictor(space, model="ridge", seed=1).fit(archs, [2.0] * 30).save(pred_path)
    monkeypatch.undo()
    for f, data in saved.items():
        assert f.read_bytes() == data, f
    assert len(table.read()) == 20 and not list(tmp_path.glob("*.tmp"))
    assert LatencyPredictor.load(pred_path).n_train == p.n_train
    # through the CLI: one line, exit 2, the old predictor still there
    csv = tmp_path / "m.csv"
    pd.DataFrame({"arch": [r["arch"] for r in rows], "latency_ms": [r["latency_ms"] for r in rows]}).to_csv(csv)
    _disk_full(monkeypatch)
    rc = main(["predictor", "fit", str(csv), "--space", f"{_space_file(tmp_path)}:space", "--model", "ridge",
               "--out", str(pred_path)])
    monkeypatch.undo()
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "No space left on device" in err[0], err
    assert pred_path.read_bytes() == saved[pred_path]


def _space_file(folder: Path) -> Path:
    f = folder / "space_def.py"
    f.write_text("from archlab.spaces.library import mlp_space\n"
                 "space = mlp_space('table_mlp', n_layer=(1, 3), width=(16, 32, 64))\n")
    return f


def test_resume_config_check_ignores_fields_a_resume_may_change():
    from archlab.supernets.training.runguard import check_resume_config

    a = TrainConfig(steps=10).to_dict()
    check_resume_config(a, {**a, "steps": 20, "device": "cuda", "num_threads": 4, "log_every": 1}, "x")
    with pytest.raises(ConfigMismatchError, match=r"x: .*batch_size=64 \(now 32\), strategy='sandwich' \(now 'uniform'\)"):
        check_resume_config(a, {**a, "batch_size": 32, "strategy": "uniform"}, "x")
    check_resume_config({k: v for k, v in a.items() if k != "max_nonfinite_steps"}, a, "x")  # older checkpoint
    opts = TrainConfig(strategy="uniform", strategy_options={"n_archs": 2, "x": (1, 2)}).to_dict()
    check_resume_config(json.loads(json.dumps(opts)), opts, "x")  # a tuple comes back from JSON as a list
