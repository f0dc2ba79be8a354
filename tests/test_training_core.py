"""Training: config validation, strategies, resumption, checkpoints, evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from archlab.core.errors import ArchlabError
from archlab.spaces.library import mlp_space
from archlab.supernets import ConvNet, MLPNet
from archlab.supernets.tasks import DigitsTask
from archlab.supernets.training.checkpoint import CheckpointError, read_checkpoint
from archlab.supernets.training.strategies import (
    STRATEGIES,
    Strategy,
    make_strategy,
    register_strategy,
)
from archlab.supernets.training.trainer import (
    TrainConfig,
    evaluate,
    evaluate_many,
    load_weights,
    train,
)

SPACE = mlp_space("tiny_mlp", n_layer=(1, 2), width=(16, 32))


@pytest.fixture(scope="module")
def task():
    return DigitsTask()


def mlp(seed: int = 0, sharing: str = "entangled", space=SPACE) -> MLPNet:
    torch.manual_seed(seed)
    return MLPNet(space, in_features=64, num_classes=10, sharing=sharing)


def cfg(**kw) -> TrainConfig:
    base = dict(steps=10, batch_size=32, lr=1e-2, checkpoint_every=4, log_every=2, num_threads=1, device="cpu")
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [("steps", 0, "TrainConfig.steps"), ("optimizer", "adam", "TrainConfig.optimizer: must be one of adamw, sgd"),
     ("strategy", "nope", "TrainConfig.strategy"), ("lr", -1.0, "TrainConfig.lr"), ("device", "tpu", "TrainConfig.device"),
     ("grad_clip", -1, "TrainConfig.grad_clip"), ("schedule", "step", "TrainConfig.schedule")],
)
def test_config_errors_name_the_field(field, value, match):
    with pytest.raises(ArchlabError, match=match):
        TrainConfig(**{field: value})
    with pytest.raises(ArchlabError, match=r"TrainConfig\.stepz: unknown field"):
        TrainConfig().replace(stepz=3)


def test_sandwich_and_uniform_pick_archs_and_reject_unknown_options():
    s = make_strategy("sandwich", SPACE, {"n_random": 3})
    archs = s.archs(np.random.default_rng(0))
    assert len(archs) == 5 and archs[0] == SPACE.largest() and archs[1] == SPACE.smallest()
    assert archs == s.archs(np.random.default_rng(0))
    u = make_strategy("uniform", SPACE)
    assert len(u.archs(np.random.default_rng(1))) == 1
    with pytest.raises(ArchlabError, match=r"strategy_options\.n_rand: unknown option of strategy 'sandwich'"):
        make_strategy("sandwich", SPACE, {"n_rand": 1})


def test_a_new_strategy_is_one_registered_class(task):
    @register_strategy("largest_only")
    class LargestOnly(Strategy):
        def archs(self, rng):
            return [self.space.largest()]

    seen = []
    try:
        train(mlp(), task, cfg(steps=3, strategy="largest_only"), None, on_step=lambda s, a, logged: seen.extend(a))
    finally:
        STRATEGIES.pop("largest_only")
    assert seen == [SPACE.largest()] * 3


def test_training_learns_and_logs(task, tmp_path):
    net = mlp()
    before = evaluate(net, task, SPACE.largest())["loss"]
    result = train(net, task, cfg(steps=40, strategy_options={"distill": True}), tmp_path)
    assert result.metrics["largest"]["loss"] < before - 0.5
    assert result.metrics["largest"]["val_accuracy"] > 0.7
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len([ln for ln in lines if '"eval"' not in ln]) == 20 and '"eval"' in lines[-1]
    assert (tmp_path / "model.safetensors").is_file() and read_checkpoint(tmp_path / "ckpt.pt")["step"] == 40
    loaded = load_weights(tmp_path)  # rebuilt from config.json alone
    for a, b in zip(loaded.state_dict().values(), net.state_dict().values()):
        assert torch.equal(a, b)


def test_crash_and_resume_gives_identical_weights(task, tmp_path):
    full = mlp()
    train(full, task, cfg(strategy="uniform", strategy_options={"n_archs": 2}), tmp_path / "full")

    class Crash(Exception):
        pass

    def crash(step, archs, logged):
        if step == 7:
            raise Crash

    with pytest.raises(Crash):
        train(mlp(), task, cfg(strategy="uniform", strategy_options={"n_archs": 2}), tmp_path / "cut", on_step=crash)
    assert read_checkpoint(tmp_path / "cut" / "ckpt.pt")["step"] == 4
    resumed = mlp(seed=9)  # different init: the checkpoint must override it
    result = train(resumed, task, cfg(strategy="uniform", strategy_options={"n_archs": 2}), tmp_path / "cut")
    assert result.resumed_from == 4
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    steps = [ln for ln in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines() if '"eval"' not in ln]
    assert len(steps) == 5  # the log was trimmed back to the checkpoint, then continued


def test_checkpoint_from_other_space_sharing_or_truncated_is_refused(task, tmp_path):
    train(mlp(), task, cfg(steps=4), tmp_path)
    other = mlp_space("other", n_layer=(1, 3), width=(16, 32))
    with pytest.raises(CheckpointError, match="another search space: 'tiny_mlp'"):
        train(mlp(space=other), task, cfg(steps=8), tmp_path)
    with pytest.raises(CheckpointError, match="sharing='entangled', the model has sharing='mos-layer'"):
        train(mlp(sharing="mos-layer"), task, cfg(steps=8), tmp_path)
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"ckpt\.pt: unreadable checkpoint \(truncated or corrupt file\)"):
        train(mlp(), task, cfg(steps=8), tmp_path)


def test_evaluate_many_matches_evaluate_and_leaves_batchnorm_untouched(task):
    torch.manual_seed(0)
    net = ConvNet(num_classes=10, in_channels=1, image_size=8)
    train(net, task, cfg(steps=3, batch_size=16, checkpoint_every=0), None)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    archs = net.space.sample_many(3, seed=1)
    many = evaluate_many(net, task, archs)
    for a, m in zip(archs, many):
        single = evaluate(net, task, a)
        assert single["loss"] == pytest.approx(m["loss"], rel=1e-5)
        assert single["val_accuracy"] == m["accuracy"]
        assert math.isfinite(m["loss"])
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k
    # recalibration matters: without it the mixed running statistics score differently
    raw = evaluate(net, task, archs[0], recalibrate=False)
    assert raw["loss"] != pytest.approx(many[0]["loss"], rel=1e-3)


def test_transformer_lm_trains_on_the_char_task():
    from archlab.spaces.library import transformer_lm_space
    from archlab.supernets import TransformerLM
    from archlab.supernets.tasks import CharLMTask

    task = CharLMTask(context=16)
    space = transformer_lm_space("tiny_lm", n_layer=(1, 2), d_model=(32,), n_head=(2,), ffn=(32, 64))
    torch.manual_seed(0)
    net = TransformerLM(space, **task.model_kwargs())
    before = evaluate(net, task, space.largest(), max_batches=2)
    result = train(net, task, cfg(steps=30, batch_size=16, lr=5e-3, checkpoint_every=0, eval_batches=2), None)
    after = result.metrics["largest"]
    assert before["perplexity"] > 80 and after["perplexity"] < before["perplexity"] * 0.6
    assert after["val_loss"] == pytest.approx(math.log(after["perplexity"]), rel=1e-6)
    many = evaluate_many(net, task, space.sample_many(3, seed=0), max_batches=2)
    assert all(m["perplexity"] < before["perplexity"] for m in many)
