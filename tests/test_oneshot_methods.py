"""Differentiable search methods and the bilevel loop on a tiny supernet."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.func import functional_call

from archlab.core.errors import ArchlabError
from archlab.search.errors import SearchError
from archlab.search.oneshot import OneShotConfig, _Bilevel, oneshot_search
from archlab.search.oneshot_cost import ChoiceCosts
from archlab.spaces.library import cell_space, mlp_space
from archlab.spaces.soft import SoftLayout
from archlab.supernets.families import MLPNet
from archlab.supernets.soft.methods import METHODS, get_method
from archlab.supernets.soft.ops import set_soft
from archlab.supernets.tasks import DigitsTask

SPACE = mlp_space(n_layer=(1, 2), width=(8, 16, 32))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def task():
    return DigitsTask()


def _latency(archs):
    return [0.5 + sum(0.01 * layer["width"] for layer in a["layers"]) for a in archs]


def test_gdas_forward_is_a_hard_sample_with_straight_through_gradient():
    m = get_method("gdas")
    alphas = [torch.zeros(5, requires_grad=True)]
    w = m.mixing(alphas, 0.5, torch.Generator().manual_seed(0))[0]
    assert sorted(w.detach().tolist()) == [0.0, 0.0, 0.0, 0.0, 1.0]
    (w * torch.arange(5.0)).sum().backward()
    assert alphas[0].grad.abs().sum() > 0
    assert m.tau(0.0) == 10.0 and m.tau(1.0) == pytest.approx(0.1)


def test_drnas_samples_lie_on_the_simplex_and_are_reparameterised():
    m = get_method("drnas")
    alphas = [torch.zeros(4, requires_grad=True)]
    torch.manual_seed(0)
    w = m.mixing(alphas, 0.0)[0]
    assert float(w.detach().sum()) == pytest.approx(1.0) and (w > 0).all()
    (w[0] - w[1]).backward()
    assert alphas[0].grad.abs().sum() > 0
    assert float(m.regulariser(alphas).detach()) == pytest.approx(0.0, abs=1e-6)  # Dirichlet(1) is the anchor
    with pytest.raises(ArchlabError, match="unknown option 'tau'"):
        get_method("drnas", tau=1.0)
    with pytest.raises(ArchlabError, match="unknown 'enas'"):
        get_method("enas")


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_returns_an_arch_of_the_space_and_a_saved_history(method, task, tmp_path):
    torch.manual_seed(0)
    net = MLPNet(SPACE, in_features=64)
    costs = ChoiceCosts.fit(SoftLayout(SPACE), _latency, n=64)
    out = tmp_path / f"{method}.json"
    res = oneshot_search(net, task, {"method": method, "steps": 6, "batch_size": 16, "history_every": 2,
                                     "latency_weight": 0.1}, costs=costs, out=out)
    assert SPACE.validate(res.arch.to_dict()) == res.arch and net.arch == res.arch
    assert [h["step"] for h in res.history] == [0, 2, 4, 5]
    for h in res.history:
        assert all(abs(sum(v) - 1.0) < 1e-9 for v in h["probs"].values())
        assert h["expected_latency_ms"] > 0.5
    saved = json.loads(out.read_text())
    assert saved["method"] == method and saved["arch"] == res.arch.to_dict() and len(saved["history"]) == 4
    assert not list(tmp_path.glob("*.tmp*"))
    sub = net.extract(res.arch)  # extraction as for any architecture
    assert sub(torch.zeros(2, 64)).shape == (2, 10)


def test_bad_settings_are_refused_naming_the_field(task):
    with pytest.raises(SearchError, match="oneshot: unknown setting 'stepz'"):
        OneShotConfig.from_dict({"stepz": 3})
    with pytest.raises(SearchError, match=r"oneshot\.arch_split"):
        OneShotConfig.from_dict({"arch_split": "test"})


def test_darts_second_order_gradient_matches_the_exact_unrolled_gradient(task):
    torch.manual_seed(0)
    net = MLPNet(mlp_space(n_layer=(1, 2), width=(4, 8)), in_features=64).double()
    cfg = OneShotConfig(method="darts2", steps=10, weight_decay=0.0, lr=0.05)
    loop = _Bilevel(net, task, cfg, None)
    xt, yt = task.batch("train", 32, torch.Generator().manual_seed(1))
    xv, yv = task.batch("val", 32, torch.Generator().manual_seed(2))
    xt, xv = xt.flatten(1).double(), xv.flatten(1).double()
    alphas = list(loop.arch.alphas)
    with torch.no_grad():
        for a in alphas:
            a.copy_(torch.randn(a.shape, dtype=a.dtype))
    # exact: d/da L_val(w - xi * grad_w L_train(w, a), a), by double backward
    probs = loop.method.expected(alphas)
    g = torch.autograd.grad(loop.loss(probs, xt, yt), loop.weights, create_graph=True, allow_unused=True)
    unrolled = [w - cfg.lr * gi if gi is not None else w for w, gi in zip(loop.weights, g)]
    originals = [w.data for w in loop.weights]
    names = [n for n, _ in net.named_parameters()]
    set_probs = loop.arch.as_dict(loop.method.expected(alphas))
    set_soft(net, set_probs)
    logits = functional_call(net, dict(zip(names, unrolled)), (xv,))
    exact = torch.autograd.grad(task.loss(logits, yv), alphas)
    assert all(torch.equal(w.data, o) for w, o in zip(loop.weights, originals))
    # the loop's finite-difference version, on the same batches
    batches = iter([(xv, yv), (xt, yt)])
    loop.batch = lambda split: next(batches)
    loop.a_opt.step = lambda: None
    loop.arch_step(0.0)
    got = torch.cat([a.grad for a in alphas])
    want = torch.cat(list(exact))
    assert torch.allclose(got, want, rtol=2e-2, atol=1e-6), (got, want)
    assert all(torch.equal(w.data, o) for w, o in zip(loop.weights, originals))  # weights restored


def test_choice_costs_recover_an_additive_latency_and_its_exact_expectation():
    space = cell_space(ops=("a", "b", "c"), n_edges=3)
    layout = SoftLayout(space)
    table = {"a": 0.0, "b": 1.0, "c": 3.0}

    def lat(archs):
        return [2.0 + sum(table[e["op"]] * (i + 1) for i, e in enumerate(a["edges"])) for a in archs]

    costs = ChoiceCosts.fit(layout, lat, n=200, ridge=1e-9)
    assert costs.r2 > 0.999999
    archs = list(space.enumerate())
    np.testing.assert_allclose([costs.of_arch(a) for a in archs], lat(archs), atol=1e-4)
    uniform = {s.path: torch.full((s.size,), 1 / s.size, dtype=torch.float64) for s in layout.slots}
    assert float(costs.expected(uniform)) == pytest.approx(float(np.mean(lat(archs))), abs=1e-4)


def test_latency_weight_moves_the_search_to_cheaper_architectures(task):
    def run(weight):
        torch.manual_seed(0)
        net = MLPNet(SPACE, in_features=64)
        costs = ChoiceCosts.fit(SoftLayout(SPACE), _latency, n=64)
        res = oneshot_search(net, task, {"method": "darts", "steps": 30, "batch_size": 16, "history_every": 29,
                                         "latency_weight": weight, "arch_options": {"arch_lr": 0.05}}, costs=costs)
        return res.history[-1]["expected_latency_ms"]

    assert run(5.0) < run(0.0) - 0.02


def test_derivation_rules_darts_and_gdas_skip_the_zero_op_drnas_takes_the_argmax():
    values = [("none", "skip_connect", "nor_conv_3x3"), ("none",), (1, 2)]
    probs = [[0.6, 0.1, 0.3], [1.0], [0.4, 0.6]]
    assert get_method("darts").derive(values, probs) == [2, 0, 1]
    assert get_method("darts2").derive(values, probs) == [2, 0, 1]
    assert get_method("gdas").derive(values, probs) == [2, 0, 1]
    assert get_method("drnas").derive(values, probs) == [0, 0, 1]
    assert get_method("tanglenas").derive(values, probs) == [0, 0, 1]
