"""Token-routed mixture-of-experts FFNs: routing, aux loss, gradients, extraction, errors, training."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archlab.core.errors import ArchlabError
from archlab.predictors.costs import cost_features
from archlab.spaces import Choice, FloatRange, IntRange, PerLayer, SearchSpace
from archlab.spaces.library import moe_transformer_lm_space, transformer_lm_space
from archlab.supernets import MLPNet, TransformerLM
from archlab.supernets.base import extreme_arch
from archlab.supernets.export import load_subnet, save_subnet
from archlab.supernets.families.plain import build_plain
from archlab.supernets.layers.moe import (
    ElasticMoEFFN,
    PlainMoEFFN,
    dispatch,
    load_balancing_loss,
    route,
)
from archlab.supernets.tasks.text import CharLMTask
from archlab.supernets.training.trainer import TrainConfig, train


def small_space(**kw) -> SearchSpace:
    args = dict(n_layer=(1, 3), d_model=(16, 24), n_head=(2, 4), ffn=(16, 32), moe_experts=(1, 2, 4),
                moe_top_k=(1, 2))
    return moe_transformer_lm_space("small_moe", **{**args, **kw})


def small_moe(seed: int = 0, **kw) -> TransformerLM:
    torch.manual_seed(seed)
    return TransformerLM(kw.pop("space", None) or small_space(), vocab_size=19, context=12, **kw)


def layers(n: int, **layer) -> list[dict]:
    base = {"n_head": 2, "ffn": 32, "moe_experts": 4, "moe_top_k": 2}
    return [{**base, **layer} for _ in range(n)]


# routing ----------------------------------------------------------------------------------
def test_router_probabilities_sum_to_one_and_each_token_gets_exactly_top_k_experts():
    torch.manual_seed(0)
    probs, gates, experts = route(torch.randn(50, 3), 2)
    torch.testing.assert_close(probs.sum(-1), torch.ones(50))
    torch.testing.assert_close(gates.sum(-1), torch.ones(50))
    assert experts.shape == (50, 2) and (experts[:, 0] != experts[:, 1]).all()
    # the gates are the kept probabilities, renormalised
    kept = probs.gather(1, experts)
    torch.testing.assert_close(gates, kept / kept.sum(-1, keepdim=True))
    # dispatch: every token reaches exactly its k experts, each expert only its own tokens
    seen: dict[int, list[int]] = {}

    def recorder(e):
        def fn(t):
            seen[e] = t[:, 0].long().tolist()
            return t
        return fn

    x = torch.arange(50, dtype=torch.float32)[:, None]
    y = dispatch(x, gates, experts, [recorder(e) for e in range(3)], 1)
    torch.testing.assert_close(y, x)  # identity experts, gates sum to 1
    for e, tokens in seen.items():
        assert sorted(tokens) == sorted(int(t) for t in torch.nonzero((experts == e).any(1)).flatten())
    per_token = np.bincount([t for tokens in seen.values() for t in tokens], minlength=50)
    assert (per_token == 2).all()


def test_moe_layer_routes_only_to_active_experts_top_k_each():
    torch.manual_seed(1)
    moe = ElasticMoEFFN(16, 32, 4, "gelu")
    moe.set_active(12, 24, 3, 2)
    calls = []
    for e, expert in enumerate(moe.experts):
        expert.register_forward_hook(lambda m, i, o, e=e: calls.append((e, i[0].shape)))
    y = moe(torch.randn(2, 7, 12))
    assert y.shape == (2, 7, 12)
    assert all(e < 3 and shape[1] == 12 for e, shape in calls)
    assert sum(shape[0] for _, shape in calls) == 2 * 7 * 2  # 14 tokens x top-2
    probs = F.softmax(moe.router(torch.randn(5, 12)), -1)
    assert probs.shape == (5, 3)  # the router is sliced to the active experts and width


def test_aux_loss_hand_checked():
    p = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    probs, _, experts = route(p.log(), 1)
    # f = (3/4, 1/4) (argmax 0, 0, 1, 0); P = (0.65, 0.35); 2 * (0.75 * 0.65 + 0.25 * 0.35) = 1.15
    assert load_balancing_loss(probs, experts).item() == pytest.approx(1.15, abs=1e-6)
    # perfectly balanced: 1.0; collapsed onto one expert with certainty: E
    uniform = torch.full((8, 4), 0.25)
    assert load_balancing_loss(uniform, torch.arange(8).remainder(4)[:, None]).item() == pytest.approx(1.0)
    collapsed = F.one_hot(torch.zeros(8, dtype=torch.long), 4).float()
    assert load_balancing_loss(collapsed, torch.zeros(8, 1, dtype=torch.long)).item() == pytest.approx(4.0)
    # top-2: f counts both slots (shares of 2 * N assignments)
    probs2, _, experts2 = route(torch.tensor([[3.0, 2.0, -9.0], [3.0, -9.0, 2.0]]), 2)
    f = torch.tensor([2, 1, 1]) / 4
    assert load_balancing_loss(probs2, experts2).item() == pytest.approx(3 * float((f * probs2.mean(0)).sum()), rel=1e-6)


def test_net_aux_loss_sums_routed_layers_and_is_zero_for_dense_archs():
    net = small_moe()
    x = net.example_input(2, 12)
    net.set_arch({"n_layer": 2, "d_model": 24, "layers": layers(2)})
    net(x)
    per_layer = [b.moe.aux_loss for b in net.blocks.active()]
    assert all(a is not None and a.item() >= 1.0 - 1e-6 for a in per_layer)
    torch.testing.assert_close(net.aux_loss(), per_layer[0] + per_layer[1])
    net.set_arch({"n_layer": 2, "d_model": 24, "layers": layers(2, moe_experts=1, moe_top_k=1)})
    net(x)
    assert net.aux_loss().item() == 0.0


def test_gradients_reach_router_and_experts():
    net = small_moe(3)
    x = net.example_input(4, 12)
    net.set_arch({"n_layer": 1, "d_model": 24, "layers": layers(1, moe_experts=2)})
    F.cross_entropy(net(x).flatten(0, 1), x.flatten()).backward()
    moe = net.blocks[0].moe
    router_grad = moe.router.bank.weight.grad
    assert router_grad[:2, :24].abs().sum() > 0 and router_grad[2:].abs().sum() == 0
    for e, expert in enumerate(moe.experts):
        g = expert.ffn_in.bank.weight.grad
        if e < 2:
            assert g is not None and g[:32, :24].abs().sum() > 0
        else:
            assert g is None or g.abs().sum() == 0
    # top-1 (Switch): the gate is the router probability, so the task loss alone trains the router
    net.zero_grad()
    net.set_arch({"n_layer": 1, "d_model": 24, "layers": layers(1, moe_top_k=1)})
    F.cross_entropy(net(x).flatten(0, 1), x.flatten()).backward()
    assert moe.router.bank.weight.grad[:4, :24].abs().sum() > 0
    # and the load-balancing loss reaches it too
    net.zero_grad()
    net(x)
    net.aux_loss().backward()
    assert moe.router.bank.weight.grad[:4, :24].abs().sum() > 0


def test_top1_gate_is_the_router_probability():
    torch.manual_seed(1)
    probs, gates, experts = route(torch.randn(30, 4), 1)
    torch.testing.assert_close(gates, probs.gather(1, experts))
    assert (gates < 1).all()


# extraction and export ------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_extracted_moe_module_equals_supernet(seed):
    net = small_moe(seed).eval()
    x = net.example_input(3, 12)
    archs = net.space.sample_many(5, seed=seed)
    if seed == 0:
        archs += [extreme_arch(net.space, "low"), extreme_arch(net.space)]
    worst = 0.0
    for arch in archs:
        net.set_arch(arch)
        y = net(x)
        sub = net.extract(arch).eval()
        worst = max(worst, (y - sub(x)).abs().max().item())
        assert not any(type(m).__name__.startswith("Elastic") for m in sub.modules())
        routed = [la for la in arch["layers"] if la["moe_experts"] > 1]
        assert sum(isinstance(m, PlainMoEFFN) for m in sub.modules()) == len(routed)
        torch.testing.assert_close(sub.aux_loss(), net.aux_loss(), atol=1e-6, rtol=1e-6)
    assert worst <= 1e-5


def test_mixture_of_supernet_banks_plug_into_experts():
    from archlab.supernets.layers.mos import LayerMixtureBank

    net = small_moe(4, sharing="mos-layer", roles=["ffn_in", "ffn_out", "moe_router"]).eval()
    moe = net.blocks[0].moe
    assert isinstance(moe.experts[1].ffn_in.bank, LayerMixtureBank)
    assert isinstance(moe.router.bank, LayerMixtureBank)
    x = net.example_input(2, 12)
    for arch in net.space.sample_many(3, seed=9):
        net.set_arch(arch)
        assert (net(x) - net.extract(arch).eval()(x)).abs().max().item() <= 1e-5


def test_save_load_round_trip(tmp_path):
    net = small_moe(5).eval()
    arch = net.space.validate({"n_layer": 3, "d_model": 16, "layers": [
        {"n_head": 4, "ffn": 16, "moe_experts": 4, "moe_top_k": 2},
        {"n_head": 2, "ffn": 32, "moe_experts": 1, "moe_top_k": 2},
        {"n_head": 2, "ffn": 32, "moe_experts": 2, "moe_top_k": 1}]})
    sub = net.extract(arch).eval()
    out = save_subnet(sub, tmp_path / "moe")
    cfg = json.loads((out / "config.json").read_text())
    assert [la.get("moe_experts") for la in cfg["dims"]["layers"]] == [4, None, 2]
    assert [la.get("moe_top_k") for la in cfg["dims"]["layers"]] == [2, None, 1]
    back = load_subnet(out)
    x = net.example_input(2, 12)
    assert (back(x) - sub(x)).abs().max().item() == 0.0
    net.set_arch(arch)
    assert (back(x) - net(x)).abs().max().item() <= 1e-5


def test_dense_layers_equal_the_dense_ffn_path():
    # a dense (moe_experts=1) layer of an MoE net is exactly the plain transformer's FFN
    torch.manual_seed(0)
    dense = TransformerLM(transformer_lm_space(n_layer=(1, 3), d_model=(16, 24), n_head=(2, 4), ffn=(16, 32)),
                          vocab_size=19, context=12).eval()
    moe = small_moe(1).eval()
    state = {k.replace(".ffn_in.", ".moe.experts.0.ffn_in.").replace(".ffn_out.", ".moe.experts.0.ffn_out."): v
             for k, v in dense.state_dict().items()}
    missing, unexpected = moe.load_state_dict(state, strict=False)
    assert not unexpected and all(".router." in k or ".experts.0." not in k for k in missing)
    x = dense.example_input(3, 12)
    for arch in dense.space.sample_many(4, seed=2):
        dense.set_arch(arch)
        moe_arch = {**arch.to_dict(), "layers": [{**la, "moe_experts": 1, "moe_top_k": 2} for la in arch["layers"]]}
        moe.set_arch(moe_arch)
        assert torch.equal(moe(x), dense(x))
        sub = moe.extract(moe_arch)
        assert set(sub.state_dict()) == set(dense.extract(arch).state_dict())  # same plain layout
        assert sub.dims["layers"] == dense.extract(arch).dims["layers"]
    # and the MoE module with one active expert is ffn_out(act(ffn_in(x))) of expert 0
    layer = ElasticMoEFFN(8, 16, 3)
    layer.set_active(6, 10, 1, 1)
    h = torch.randn(4, 6)
    e0 = layer.experts[0]
    w1, b1 = e0.ffn_in.active_weight()
    w2, b2 = e0.ffn_out.active_weight()
    torch.testing.assert_close(layer(h), F.linear(F.gelu(F.linear(h, w1, b1)), w2, b2))
    assert layer.aux_loss is None


def test_top_k_is_clipped_to_the_active_expert_count():
    net = small_moe(6).eval()
    x = net.example_input(2, 12)
    outs = []
    for k in (1, 2):
        net.set_arch({"n_layer": 1, "d_model": 16, "layers": layers(1, moe_experts=1, moe_top_k=k)})
        outs.append(net(x))
    assert torch.equal(outs[0], outs[1])
    assert net.blocks[0].moe.top_k == 1


def test_space_without_moe_names_builds_the_unchanged_model():
    net = TransformerLM(transformer_lm_space(), vocab_size=17, context=10)
    assert not net.has_moe and not any("moe" in k for k in net.state_dict())
    assert "blocks.0.ffn_in.bank.weight" in net.state_dict()
    net(net.example_input(1, 10))
    assert net.aux_loss().item() == 0.0


# errors -------------------------------------------------------------------------------------
def _lm_space(**layer) -> SearchSpace:
    return SearchSpace("t", n_layer=IntRange(1, 2), d_model=Choice(8),
                       layers=PerLayer("n_layer", n_head=Choice(2), ffn=Choice(8), **layer))


@pytest.mark.parametrize(
    ("space", "match"),
    [
        (_lm_space(moe_experts=Choice(1, 2), moe_top_k=Choice(1, 4)),
         r"layers\[i\]\.moe_top_k: value 4 exceeds the largest layers\[i\]\.moe_experts \(2\)"),
        (_lm_space(moe_top_k=Choice(1, 2)), r"layers\[i\]\.moe_top_k: needs layers\[i\]\.moe_experts"),
        (_lm_space(moe_experts=Choice(0, 2)), r"layers\[i\]\.moe_experts: .*integers >= 1"),
        (_lm_space(moe_experts=FloatRange(1, 4)), r"layers\[i\]\.moe_experts"),
        (_lm_space(moe_experts=Choice(2), moe_top_k=Choice(0, 1)), r"layers\[i\]\.moe_top_k: .*integers >= 1"),
        (_lm_space(moe_expert=Choice(2)), r"'layers\[i\]\.moe_expert' is not a known MoE setting"),
    ],
)
def test_bad_moe_spaces_name_the_field(space, match):
    with pytest.raises(ArchlabError, match=match):
        TransformerLM(space, vocab_size=5, context=4)


def test_moe_params_on_a_family_without_moe_are_an_error():
    space = SearchSpace("m", n_layer=IntRange(1, 2),
                        layers=PerLayer("n_layer", width=Choice(8, 16), moe_experts=Choice(1, 2)))
    with pytest.raises(ArchlabError, match=r"mlp: .*'layers\[i\]\.moe_experts'.*does not support"):
        MLPNet(space, in_features=4)
    top = SearchSpace("t", n_layer=IntRange(1, 2), d_model=Choice(8), moe_experts=Choice(2),
                      layers=PerLayer("n_layer", n_head=Choice(2), ffn=Choice(8)))
    with pytest.raises(ArchlabError, match=r"'moe_experts' is not a known MoE setting; allowed: layers\[i\]"):
        TransformerLM(top, vocab_size=5, context=4)


def test_plain_config_with_top_k_above_experts_is_an_error():
    dims = {"vocab_size": 5, "context": 4, "head_dim": 4, "d_model": 8,
            "layers": [{"n_head": 2, "ffn": 8}, {"n_head": 2, "ffn": 8, "moe_experts": 2, "moe_top_k": 3}]}
    with pytest.raises(ArchlabError, match=r"layers\[1\]\.moe_top_k: 3; allowed: integers 1\.\.2"):
        build_plain("transformer_lm", dims)
    with pytest.raises(ArchlabError, match=r"moe_top_k: 3 with 2 experts"):
        route(torch.zeros(1, 2), 3)
    with pytest.raises(ArchlabError, match=r"moe_experts: 4 is outside"):
        ElasticMoEFFN(8, 8, 2).set_active(8, 8, 4, 1)
    with pytest.raises(ArchlabError, match=r"TrainConfig\.moe_aux_coef"):
        TrainConfig(moe_aux_coef=-0.1)


# costs and training ---------------------------------------------------------------------
def test_cost_features_count_active_expert_macs_and_all_expert_params():
    space = small_space(n_layer=(1, 1))
    def arch(e, k):
        return {"n_layer": 1, "d_model": 16, "layers": [{"n_head": 2, "ffn": 32, "moe_experts": e, "moe_top_k": k}]}
    rows = [arch(1, 1), arch(1, 2), arch(4, 1), arch(4, 2)]
    names, m = cost_features("transformer_lm", space.encode_many(rows), space.feature_names(), {"context": 12})
    macs, params = m[:, names.index("cost.layers.0.macs")], m[:, names.index("cost.layers.0.params")]
    ffn_macs, router = 2 * 16 * 32, 16 * 4
    assert macs[1] == macs[0]  # clipped: a dense layer runs one FFN
    assert macs[2] - macs[0] == router and macs[3] - macs[0] == ffn_macs + router
    assert params[3] == params[2] and params[2] - params[0] == 3 * (2 * 16 * 32 + 32 + 16) + router
    # the dense space's features are unchanged
    dense = transformer_lm_space(n_layer=(1, 1), d_model=(16,), ffn=(32,))
    names_d, m_d = cost_features("transformer_lm", dense.encode_many([{"n_layer": 1, "d_model": 16, "layers": [
        {"n_head": 2, "ffn": 32}]}]), dense.feature_names(), {"context": 12})
    assert m_d[0, names_d.index("cost.layers.0.params")] == params[0]


def test_short_training_run_decreases_the_loss(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 120, encoding="utf-8")
    task = CharLMTask(text, context=16)
    torch.manual_seed(0)
    space = moe_transformer_lm_space("tiny_moe", n_layer=(1, 2), d_model=(32,), n_head=(2,), ffn=(32, 64),
                                     moe_experts=(1, 2, 4), moe_top_k=(1, 2))
    net = TransformerLM(space, **task.model_kwargs())
    losses, aux = [], []

    def on_step(step, archs, logged):
        losses.append(logged["loss"])
        aux.append(logged.get("moe_aux_loss"))

    cfg = TrainConfig(steps=20, batch_size=16, lr=3e-3, warmup_steps=2, checkpoint_every=0, log_every=0,
                      eval_batches=1, num_threads=1, device="cpu", strategy_options={"n_random": 1})
    result = train(net, task, cfg, on_step=on_step)
    assert result.steps == 20 and len(losses) == 20
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.3
    assert losses[0] == pytest.approx(math.log(task.vocab_size), abs=0.5)
    assert all(a is not None and a >= 0.0 for a in aux)  # logged (0 for all-dense archs)
    assert any(a > 0.5 for a in aux)


def test_aux_term_is_added_only_with_moe_and_a_coefficient():
    from archlab.supernets.training.step import _Step

    net = small_moe(7)
    x = net.example_input(2, 12)
    y = torch.randint(0, 19, (2, 12))

    class _Task:
        def loss(self, logits, target):
            return F.cross_entropy(logits.flatten(0, 1), target.flatten())

    arch = {"n_layer": 1, "d_model": 16, "layers": layers(1, moe_experts=4, moe_top_k=1)}
    grads = {}
    for coef in (0.0, 1.0):
        net.zero_grad()
        ctx = _Step(net, net, _Task(), x, y, lambda: torch.autocast("cpu", enabled=False), None, coef)
        ctx.backward(ctx.loss(ctx.forward(arch)))
        grads[coef] = net.blocks[0].moe.router.bank.weight.grad.clone()
        assert len(ctx.aux_losses) == (1 if coef else 0)
    # top-1 (Switch) gates: the task loss alone trains the router; the aux term adds to it
    assert grads[0.0].abs().max() > 1e-4
    assert (grads[1.0] - grads[0.0]).abs().max() > 1e-4


def test_plain_moe_layer_matches_a_loop_over_tokens():
    torch.manual_seed(8)
    layer = PlainMoEFFN(6, 12, 3, 2, "gelu").eval()
    h = torch.randn(10, 6)
    probs = F.softmax(layer.router(h), -1)
    expected = torch.zeros(10, 6)
    for t in range(10):
        top = probs[t].topk(2)
        for p, e in zip(top.values / top.values.sum(), top.indices):
            expected[t] += p * layer.experts[int(e)](h[t:t + 1])[0]
    torch.testing.assert_close(layer(h), expected, atol=1e-6, rtol=1e-5)
    assert isinstance(layer.router, nn.Linear) and layer.router.bias is None


def test_default_topk_layer_is_bit_identical_to_the_per_expert_loop():
    # the rule and dispatch before routers were pluggable: argsort by expert, index_add per expert
    torch.manual_seed(11)
    layer = PlainMoEFFN(6, 12, 4, 2, "gelu").eval()
    h = torch.randn(40, 6)
    probs = F.softmax(layer.router(h).float(), -1)
    top, experts = probs.topk(2, dim=-1)
    gates = top / top.sum(-1, keepdim=True)
    flat = experts.reshape(-1)
    order = torch.argsort(flat, stable=True)
    tokens_sorted, gates_sorted = order // 2, gates.reshape(-1)[order]
    expected = h.new_zeros(40, 6)
    start = 0
    for e, count in enumerate(torch.bincount(flat, minlength=4).tolist()):
        idx = tokens_sorted[start:start + count]
        expected.index_add_(0, idx, layer.experts[e](h.index_select(0, idx)) * gates_sorted[start:start + count, None])
        start += count
    assert torch.equal(layer(h), expected)
    assert torch.equal(layer.aux_loss, load_balancing_loss(probs, experts))
