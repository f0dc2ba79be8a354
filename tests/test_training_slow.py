"""Slow training tests: SIGKILL + resume in a subprocess, torchrun DDP, digits accuracy."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")

WORKER = textwrap.dedent(
    """
    import json, os, signal, sys
    import torch
    from archlab.spaces.library import mlp_space
    from archlab.supernets import MLPNet
    from archlab.supernets.tasks import DigitsTask
    from archlab.supernets.training.trainer import TrainConfig, train

    out, steps, kill_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.manual_seed(0)
    net = MLPNet(mlp_space("w", n_layer=(1, 3), width=(16, 32, 64)), in_features=64, num_classes=10)
    cfg = TrainConfig(steps=steps, batch_size=32, lr=5e-3, checkpoint_every=5, log_every=1,
                      strategy="sandwich", strategy_options={"n_random": 2, "distill": True}, device="cpu")
    rank = int(os.environ.get("RANK", "0"))
    seen = []

    def on_step(step, archs, logged):
        seen.append([a.key for a in archs])
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    train(net, DigitsTask(), cfg, out, on_step=on_step)
    with open(os.path.join(out, f"archs-rank{rank}.json"), "w") as fh:
        json.dump(seen, fh)
    """
)


def _run(args: list[str], env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "ARCHLAB_PROGRESS": "0", "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


@pytest.mark.slow
def test_sigkill_then_rerun_ends_with_the_same_weights(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert _run([sys.executable, str(script), str(full), "20", "0"]).returncode == 0
    killed = _run([sys.executable, str(script), str(cut), "20", "13"])
    assert killed.returncode == -signal.SIGKILL
    assert not (cut / "model.safetensors").exists()
    again = _run([sys.executable, str(script), str(cut), "20", "0"])
    assert again.returncode == 0, again.stderr
    a, b = _weights(full), _weights(cut)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [json.loads(ln)["step"] for ln in (cut / "metrics.jsonl").read_text().splitlines()]
    assert steps == [*range(1, 21), 20]  # trimmed to the checkpoint at 10, then continued


@pytest.mark.slow
def test_torchrun_two_ranks_sample_the_same_archs(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "ddp"
    proc = _run([str(TORCHRUN), "--nproc-per-node=2", "--standalone", str(script), str(out), "6", "0"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = json.loads((out / "archs-rank0.json").read_text())
    r1 = json.loads((out / "archs-rank1.json").read_text())
    assert len(r0) == 6 and r0 == r1
    assert len({tuple(s) for s in r0}) > 1  # the random part of the sandwich changes per step
    assert (out / "model.safetensors").is_file() and (out / "ckpt.pt").is_file()
    logged = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "eval" not in r] == list(range(1, 7))  # rank 0 alone writes


@pytest.mark.slow
def test_digits_cnn_example_reaches_the_accuracy_goal(tmp_path, run_cli):
    from archlab.experiment import load_experiment

    exp = load_experiment("digits_cnn")
    exp.runs_dir = tmp_path
    result = exp.train_supernet(num_threads=1)  # the example's own settings; 1 thread on a busy box
    largest, smallest = result.metrics["largest"], result.metrics["smallest"]
    print(f"digits_cnn: {result.seconds:.0f} s, largest {largest['val_accuracy']:.4f}, smallest {smallest['val_accuracy']:.4f}")
    assert largest["val_accuracy"] >= 0.97
    assert smallest["val_accuracy"] >= 0.93
    # inherited weights from the saved run give the same numbers
    from archlab.supernets.training.trainer import evaluate

    net = exp.load_supernet()
    again = evaluate(net, exp.task, exp.space.smallest())
    assert again["val_accuracy"] == pytest.approx(smallest["val_accuracy"])
    # the extracted smallest subnet (BatchNorm recalibrated for it) scores the same standalone
    exp_file = tmp_path / "digits.py"
    exp_file.write_text(
        "from archlab.experiment import load_experiment\n"
        f"experiment = load_experiment('digits_cnn')\nexperiment.runs_dir = {str(tmp_path)!r}\n"
    )
    (tmp_path / "small.json").write_text(exp.space.smallest().to_json())
    code, _, err = run_cli("extract", str(exp_file), str(tmp_path / "small.json"), str(tmp_path / "sub"), "--no-onnx")
    assert code == 0, err
    meta = json.loads((tmp_path / "sub" / "config.json").read_text())["meta"]
    assert meta["metrics"]["accuracy"] == pytest.approx(again["val_accuracy"])
