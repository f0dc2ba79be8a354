"""Categorical (unordered) choices: the space's extremes take their default, so sandwich
training, the end-of-training evaluation and extraction work on every space the DSL accepts."""

from __future__ import annotations

import pytest
import torch

from archlab.spaces import Choice, IntRange, PerLayer, SearchSpace, SpaceError
from archlab.spaces.library import mlp_space


def _space(**act):
    return SearchSpace("acts", n_layer=IntRange(1, 3), activation=Choice("relu", "gelu", **act),
                       layers=PerLayer("n_layer", width=Choice(16, 32)))


def test_extremes_take_the_first_value_or_the_given_default():
    space = _space()
    assert space.largest()["activation"] == "relu" and space.smallest()["activation"] == "relu"
    assert space.largest()["n_layer"] == 3 and {lay["width"] for lay in space.largest()["layers"]} == {32}
    gelu = _space(default="gelu")
    assert gelu.largest()["activation"] == "gelu" and gelu.smallest()["activation"] == "gelu"
    assert gelu.smallest()["n_layer"] == 1 and gelu.smallest()["layers"][0]["width"] == 16


def test_default_round_trips_and_leaves_other_fingerprints_alone():
    plain, gelu = _space(), _space(default="gelu")
    assert "default" not in plain.params["activation"].to_json()  # spaces without it keep their fingerprint
    again = SearchSpace.from_json(gelu.to_json())
    assert again.fingerprint == gelu.fingerprint != plain.fingerprint
    assert again.largest()["activation"] == "gelu"
    assert Choice(None, "x").default is None and Choice(None, "x", default="x").default == "x"


def test_bad_default_and_order_errors_say_what_to_do():
    with pytest.raises(SpaceError, match=r"default: 'swish' is not allowed; allowed: 'relu', 'gelu'"):
        Choice("relu", "gelu", default="swish")
    with pytest.raises(SpaceError, match=r"only numeric choices are ordered .*Choice\(\.\.\., default=VALUE\)"):
        Choice("relu", "gelu").high()


@pytest.mark.parametrize("strategy", ["sandwich", "uniform"])
def test_training_and_evaluation_on_a_categorical_activation(tmp_path, strategy):
    from archlab.supernets.families import FAMILIES
    from archlab.supernets.tasks import DigitsTask
    from archlab.supernets.training.config import TrainConfig
    from archlab.supernets.training.evaluation import evaluate
    from archlab.supernets.training.trainer import train

    space = mlp_space(n_layer=(1, 2), width=(16, 32), activation=("relu", "gelu"))
    task = DigitsTask()
    torch.manual_seed(0)
    net = FAMILIES["mlp"](space, **{k: v for k, v in task.model_kwargs().items() if k in ("in_features", "num_classes")})
    result = train(net, task, TrainConfig(steps=6, batch_size=32, seed=0, strategy=strategy), tmp_path / "sn")
    assert result.steps == 6 and set(result.metrics) == {"largest", "smallest"}
    assert all(0.0 <= m["val_accuracy"] <= 1.0 for m in result.metrics.values())
    x = task.eval_batches("val", 1)[0][0][:8].flatten(1)
    outs = {}
    for act in ("relu", "gelu"):
        arch = space.validate({"n_layer": 2, "activation": act, "layers": [{"width": 32}, {"width": 16}]})
        assert 0.0 <= evaluate(net, task, arch)["val_accuracy"] <= 1.0
        net.set_arch(arch)
        net.eval()
        with torch.no_grad():
            outs[act] = net(x)
            assert torch.allclose(net.extract(arch).eval()(x), outs[act], atol=1e-5)
    assert not torch.allclose(outs["relu"], outs["gelu"])  # the choice really changes the network
