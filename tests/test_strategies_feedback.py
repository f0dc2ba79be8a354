"""Strategies with feedback: PA&DA follows the recorded gradient norms; progressive shrinking
opens the space phase by phase; both run through the trainer's one interface."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pytest
import torch

from archlab.spaces.library import mlp_space
from archlab.supernets.families.mlp import MLPNet
from archlab.supernets.tasks.vision import DigitsTask
from archlab.supernets.training.config import TrainConfig
from archlab.supernets.training.strategies import make_strategy
from archlab.supernets.training.trainer import train

SPACE = mlp_space("t", n_layer=(1, 3), width=(8, 16, 32))


def _arch(depth, width=8):
    return SPACE.validate({"n_layer": depth, "layers": [{"width": width}] * depth})


def test_pada_path_probabilities_follow_recorded_gradient_norms():
    s = make_strategy("pada", SPACE, {"momentum": 0.0, "path_eps": 0.0})
    s.feedback([_arch(1)], {"grad_norm": 1.0})
    s.feedback([_arch(2)], {"grad_norm": 3.0})
    # n_layer: 1 -> 1.0, 2 -> 3.0, 3 unseen -> mean of the seen (2.0); probabilities proportional
    assert np.allclose(s.value_probs("n_layer", (1, 2, 3)), np.array([1.0, 3.0, 2.0]) / 6.0)
    # layers.0.width=8 was in both paths: the last norm (momentum 0); 16, 32 unseen -> the same
    assert np.allclose(s.value_probs("layers.0.width", (8, 16, 32)), [1 / 3] * 3)
    # running average with momentum
    m = make_strategy("pada", SPACE, {"momentum": 0.5, "path_eps": 0.0})
    for norm in (2.0, 4.0, 8.0):
        m.feedback([_arch(3, 32)], {"grad_norm": norm})
    assert m.imp["n_layer"]["3"] == pytest.approx(0.5 * (0.5 * 2.0 + 0.5 * 4.0) + 0.5 * 8.0)
    # the path weight the loss carried is divided out of the recorded norm
    m._path_weight = 2.0
    m.feedback([_arch(1)], {"grad_norm": 6.0})
    assert m.imp["n_layer"]["1"] == pytest.approx(3.0)


def test_pada_draws_paths_with_those_probabilities_and_weights_them_by_u_over_q():
    s = make_strategy("pada", SPACE, {"momentum": 0.0, "path_eps": 0.1, "max_weight": 1e6})
    s.feedback([_arch(1, 8)], {"grad_norm": 1.0})
    s.feedback([_arch(3, 32)], {"grad_norm": 4.0})
    p_depth = s.value_probs("n_layer", (1, 2, 3))
    rng = np.random.default_rng(0)
    n = 6000
    depths = Counter()
    for _ in range(n):
        (a,) = s.archs(rng)
        depths[a["n_layer"]] += 1
        if a["n_layer"] == 1:
            p_w = s.value_probs("layers.0.width", (8, 16, 32))[(8, 16, 32).index(a["layers"][0]["width"])]
            q = p_depth[0] * p_w
            assert s._path_weight == pytest.approx((1 / 3 * 1 / 3) / q)
    freq = np.array([depths[d] / n for d in (1, 2, 3)])
    assert np.allclose(freq, p_depth, atol=0.025)
    assert freq[2] > 2 * freq[0]  # the path with 4x the gradient norm is drawn far more often


def test_pada_data_sampling_follows_example_importance_and_weights_losses():
    task = DigitsTask(flatten=True)
    s = make_strategy("pada", SPACE, {"data_eps": 0.0, "max_weight": 1e9})
    g = torch.Generator().manual_seed(0)
    s.batch(task, 4, g)
    n = task.num_examples("train")
    imp = torch.full((n,), 1.0, dtype=torch.float64)
    imp[:10] = 50.0  # ten hard examples
    s.data_imp = imp.clone()
    x, y = s.batch(task, 2000, g)
    idx, w = s._batch
    share = float((idx < 10).double().mean())
    expect = float(imp[:10].sum() / imp.sum())
    assert share == pytest.approx(expect, abs=0.03)
    q = imp / imp.sum()
    assert torch.allclose(w.double(), 1.0 / (n * q[idx]), rtol=1e-5)
    assert torch.equal(x, task.examples("train", idx)[0]) and torch.equal(y, task._y["train"][idx])


@pytest.mark.parametrize("strategy", ["pada", "progressive"])
def test_strategies_train_through_the_trainer_and_keep_their_state(strategy, tmp_path):
    task = DigitsTask(flatten=True)
    torch.manual_seed(0)
    net = MLPNet(SPACE, in_features=64, num_classes=10)
    seen = []
    cfg = TrainConfig(steps=12, batch_size=16, strategy=strategy, device="cpu", checkpoint_every=6, log_every=0)
    res = train(net, task, cfg, tmp_path, on_step=lambda step, archs, logged: seen.append((step, archs, logged)))
    assert res.steps == 12 and all(np.isfinite(rec[2]["loss"]) for rec in seen)
    body = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    state = body["strategy"]
    if strategy == "pada":
        assert state["imp"]["n_layer"] and state["data_imp"].shape == (task.num_examples("train"),)
        assert (state["data_imp"] != 1.0).sum() > 0  # examples seen got their gradient-norm importance
        buf = io.BytesIO()
        torch.save(state, buf)
        buf.seek(0)
        again = make_strategy("pada", SPACE)
        again.load_state_dict(torch.load(buf, weights_only=True))
        assert again.imp == state["imp"]
    else:
        phases = [rec[2]["phase"] for rec in seen]
        assert phases[0] == 0 and phases[-1] == 2 and phases == sorted(phases)
        assert all(len(rec[1]) == 1 for rec in seen if rec[2]["phase"] == 0)


def test_progressive_opens_one_group_per_phase():
    s = make_strategy("progressive", SPACE, {"order": ["n_layer"], "warmup": 0.2, "n_random": 3})
    rng = np.random.default_rng(0)
    s.on_step_start(10, 100)
    assert s.archs(rng) == [SPACE.largest()]
    s.on_step_start(30, 100)  # phase 1: depth free, every width at its largest
    archs = [a for _ in range(30) for a in s.archs(rng)[1:]]
    assert {a["n_layer"] for a in archs} == {1, 2, 3}
    assert {layer["width"] for a in archs for layer in a["layers"]} == {32}
    s.on_step_start(90, 100)  # phase 2: everything
    archs = [a for _ in range(30) for a in s.archs(rng)[1:]]
    assert {layer["width"] for a in archs for layer in a["layers"]} == {8, 16, 32}
    with pytest.raises(Exception, match="order"):
        make_strategy("progressive", SPACE, {"order": ["kernel"]})
