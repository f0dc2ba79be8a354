"""Token routers: each rule on hand-made inputs, auxiliary losses against direct computation,
the issue's invariants, gradients, extraction, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archlab.core.errors import ArchlabError
from archlab.spaces import Choice, IntRange, PerLayer, SearchSpace
from archlab.spaces.library import moe_transformer_lm_space
from archlab.supernets import TransformerLM
from archlab.supernets.layers.moe import ElasticMoEFFN, PlainMoEFFN, run_dispatch
from archlab.supernets.routers import (
    ROUTERS,
    Router,
    RouteSettings,
    RoutingState,
    register_router,
    symmetric_kl,
    thor_loss,
)
from archlab.supernets.routers.random_grow import grow_k, set_progress


def plain_rule(name: str, d: int = 2, experts: int = 3, null: int = 0, **options) -> Router:
    return ROUTERS[name](d, experts, null, None, True, options)


def fixed(logits: torch.Tensor):
    return lambda x: logits


def assignments(d) -> list[tuple[int, int, float]]:
    return sorted((int(t), int(e), round(float(w), 6)) for t, e, w in zip(d.tokens, d.experts, d.weights.detach()))


# topk ---------------------------------------------------------------------------------------
def test_topk_capacity_drops_in_first_choice_priority_and_losses_match_direct_computation():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.5, 0.1, 0.4], [0.2, 0.7, 0.1]])
    logits = probs.log() + 1.5  # softmax is shift-invariant; the z-loss is not
    rule = plain_rule("topk", z_loss=0.1)
    d = rule.route(torch.zeros(4, 2), fixed(logits), RouteSettings(3, 1, capacity=1.0), RoutingState())
    # capacity ceil(1.0 * 4 * 1 / 3) = 2: expert 0 keeps tokens 0 and 1, token 2 is dropped
    assert assignments(d) == [(0, 0, 0.7), (1, 0, 0.6), (3, 1, 0.7)]
    assert d.dropped.tolist() == [False, False, True, False]
    f = torch.tensor([3, 1, 0]) / 4  # the choices, before the drop (Switch)
    torch.testing.assert_close(d.aux["load_balance"], 3 * (f * probs.mean(0)).sum())
    torch.testing.assert_close(d.aux["z_loss"], torch.logsumexp(logits, -1).pow(2).mean())
    torch.testing.assert_close(d.aux_loss(), d.aux["load_balance"] + 0.1 * d.aux["z_loss"])
    # top-2 at capacity 0.5 (1 slot per expert): every first choice is served before a second one
    two = torch.tensor([[2.0, 1.0], [1.0, 2.0]])
    d2 = rule.route(torch.zeros(2, 2), fixed(two), RouteSettings(2, 2, capacity=0.5), RoutingState())
    p = F.softmax(two, -1).max(-1).values
    assert assignments(d2) == [(0, 0, round(float(p[0]), 6)), (1, 1, round(float(p[1]), 6))]
    assert d2.dropped.tolist() == [True, True]
    # no capacity: nothing dropped, exactly k experts per token
    d3 = rule.route(torch.zeros(4, 2), fixed(logits), RouteSettings(3, 2), RoutingState())
    assert d3.dropped is None and torch.bincount(d3.tokens).tolist() == [2, 2, 2, 2]


def test_dropped_tokens_pass_through_the_residual():
    torch.manual_seed(0)
    layer = PlainMoEFFN(6, 8, 2, 1, capacity=0.5).eval()
    h = torch.randn(10, 6)
    y = layer(h)
    dropped = layer.last_routing.dispatch.dropped
    assert dropped.sum() >= 1  # capacity 0.5 of 10 tokens on 2 experts: 3 slots each
    assert (y[dropped] == 0).all() and (y[~dropped].abs().sum(-1) > 0).all()


# expert choice ------------------------------------------------------------------------------
def test_expert_choice_each_expert_takes_its_top_tokens():
    probs = torch.tensor([[0.5, 0.4, 0.1], [0.3, 0.3, 0.4], [0.2, 0.2, 0.6]])
    d = plain_rule("expert_choice").route(torch.zeros(3, 2), fixed(probs.log()), RouteSettings(3, capacity=1.0), RoutingState())
    # capacity ceil(3 * 1 / 3) = 1 token per expert: token 0 gets two experts, token 1 none
    assert assignments(d) == [(0, 0, 0.5), (0, 1, 0.4), (2, 2, 0.6)]
    assert d.dropped.tolist() == [False, True, False]
    assert set(d.aux) == {"z_loss"}  # no balancing loss in the paper


@pytest.mark.parametrize("n", [8, 12, 50])
def test_expert_choice_load_cv_is_exactly_zero_at_capacity_one(n):
    torch.manual_seed(n)
    d = plain_rule("expert_choice", experts=4).route(torch.zeros(n, 2), fixed(torch.randn(n, 4) * 3), RouteSettings(4, capacity=1.0), RoutingState())
    load = torch.bincount(d.experts, minlength=4).float()
    assert (load.std(unbiased=False) / load.mean()).item() == 0.0
    assert load[0].item() == math.ceil(n / 4)


# top-p ----------------------------------------------------------------------------------------
def test_top_p_smallest_prefix_reaching_p_and_its_losses():
    probs = torch.tensor([[0.6, 0.3, 0.1], [0.1, 0.85, 0.05]])
    rule = plain_rule("top_p")
    d = rule.route(torch.zeros(2, 2), fixed(probs.log()), RouteSettings(3, top_p=0.8), RoutingState())
    assert assignments(d) == [(0, 0, 0.6), (0, 1, 0.3), (1, 1, 0.85)]
    f = torch.tensor([1, 2, 0]) / 3
    torch.testing.assert_close(d.aux["load_balance"], 3 * (f * probs.mean(0)).sum())
    torch.testing.assert_close(d.aux["dynamic"], -(probs * probs.log()).sum(-1).mean())
    torch.testing.assert_close(d.aux_loss(), d.aux["load_balance"] + 0.01 * d.aux["dynamic"])


def test_top_p_one_uses_all_experts_and_a_one_hot_router_uses_one():
    torch.manual_seed(1)
    rule = plain_rule("top_p", experts=5)
    d = rule.route(torch.zeros(20, 2), fixed(torch.randn(20, 5) * 4), RouteSettings(5, top_p=1.0), RoutingState())
    assert torch.bincount(d.tokens, minlength=20).tolist() == [5] * 20
    one_hot = torch.full((20, 5), -1e4)
    one_hot[torch.arange(20), torch.arange(20) % 5] = 1e4
    for p in (0.3, 0.99, 1.0 - 1e-6):
        d = rule.route(torch.zeros(20, 2), fixed(one_hot), RouteSettings(5, top_p=p), RoutingState())
        assert torch.bincount(d.tokens, minlength=20).tolist() == [1] * 20
        assert d.experts.tolist() == (torch.arange(20) % 5).tolist()


# null experts ------------------------------------------------------------------------------
def test_null_experts_vary_the_real_experts_per_token_and_average_the_null_loads():
    rule = plain_rule("null_experts", d=2, experts=2, null=2)
    with torch.no_grad():
        rule.null_gate.weight.copy_(torch.tensor([[3.0, 3.0], [-5.0, 3.0]]))  # null logits = x @ W^T
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    real = torch.tensor([[2.0, 1.0], [0.0, 0.0]])
    d = rule.route(x, fixed(real), RouteSettings(2, 2, null=2), RoutingState())
    logits = torch.cat([real, x @ rule.null_gate.weight.t()], -1)  # [[2,1,3,-5], [0,0,3,3]]
    probs = F.softmax(logits, -1)
    # token 0: null 0 then real 0; token 1: both null experts (no real expert: zero output)
    w0 = (probs[0, 0] / (probs[0, 0] + probs[0, 2])).detach()
    assert assignments(d) == [(0, 0, round(float(w0), 6))]
    assert d.null_slots.tolist() == [1, 2]
    f = torch.tensor([1, 0, 2, 1]) / 4
    f_avg = torch.cat([f[:2], f[2:].mean().expand(2)])
    p_avg = torch.cat([probs.mean(0)[:2], probs.mean(0)[2:].mean().expand(2)])
    torch.testing.assert_close(d.aux["load_balance"], 4 * (f_avg * p_avg).sum())


def test_null_experts_with_zero_null_experts_equals_topk():
    torch.manual_seed(2)
    h = torch.randn(2, 9, 6)
    for k in (1, 2):
        a = PlainMoEFFN(6, 8, 3, k, router="topk")
        b = PlainMoEFFN(6, 8, 3, k, router="null_experts", null=0)
        b.load_state_dict(a.state_dict())
        assert torch.equal(a(h), b(h))
        assert torch.equal(a.aux_loss, b.aux_loss)


# recurrent ---------------------------------------------------------------------------------
def test_recurrent_router_carries_the_gru_state_from_layer_to_layer():
    torch.manual_seed(3)
    state = RoutingState(ROUTERS["recurrent"].shared_modules({"hidden": 5}))
    gru = state.shared["recurrent_gru"]
    layers = [PlainMoEFFN(6, 8, 3, 1, router="recurrent", options={"hidden": 5}, state=state) for _ in range(2)]
    h = torch.randn(7, 6)
    state.reset()
    layers[0](h)
    h1 = gru(layers[0].rule.proj(h), torch.zeros(7, 5))
    torch.testing.assert_close(state.hidden, h1)
    layers[1](h)
    h2 = gru(layers[1].rule.proj(h), h1)
    torch.testing.assert_close(state.hidden, h2)
    expected = F.softmax(layers[1].rule.gate(h2), -1).argmax(-1)
    assert layers[1].last_routing.dispatch.experts.tolist() == expected.tolist()
    # one GRU for the whole network, registered once
    net = TransformerLM(moe_transformer_lm_space("r", n_layer=(2, 2), d_model=(16,), n_head=(2,), ffn=(16,), moe_experts=(2,),
                                                 moe_router=("recurrent",)), vocab_size=7, context=6)
    grus = [m for m in net.modules() if isinstance(m, nn.GRUCell)]
    assert len(grus) == 1 and all(b.moe.routing_state.shared["recurrent_gru"] is grus[0] for b in net.blocks)


# stochastic (THOR) -----------------------------------------------------------------------------
def test_stochastic_router_random_expert_in_training_deterministic_in_inference():
    rule = plain_rule("stochastic", experts=4)
    rule.train()
    torch.manual_seed(4)
    d = rule.route(torch.zeros(4000, 2), None, RouteSettings(4), RoutingState())
    assert d.tokens.tolist() == list(range(4000)) and (d.weights == 1).all()
    counts = torch.bincount(d.experts, minlength=4)
    assert ((counts - 1000).abs() < 150).all()  # uniform: 4 sd of a binomial(4000, 1/4) is ~110
    rule.eval()
    a = rule.route(torch.zeros(50, 2), None, RouteSettings(4), RoutingState())
    b = rule.route(torch.zeros(50, 2), None, RouteSettings(4), RoutingState())
    assert torch.equal(a.experts, b.experts)


def test_thor_consistency_loss_is_the_symmetric_kl():
    torch.manual_seed(5)
    la, lb = torch.randn(3, 4, 7), torch.randn(3, 4, 7)
    pa = torch.distributions.Categorical(logits=la.reshape(-1, 7))
    pb = torch.distributions.Categorical(logits=lb.reshape(-1, 7))
    direct = 0.5 * (torch.distributions.kl_divergence(pa, pb) + torch.distributions.kl_divergence(pb, pa)).mean()
    torch.testing.assert_close(symmetric_kl(la, lb), direct)
    assert symmetric_kl(la, la).item() == pytest.approx(0.0, abs=1e-6)
    model = nn.Sequential(PlainMoEFFN(6, 8, 3, 1, router="stochastic")).train()
    x = torch.randn(40, 6)
    total, _out, cr = thor_loss(model, x, lambda o: o.pow(2).mean(), alpha=2.0)
    assert cr.item() > 0  # two passes, two different expert draws
    total.backward()
    assert all(e.ffn_in.weight.grad is not None for e in model[0].experts)


# random grow (SMoE-Dropout) --------------------------------------------------------------------
def test_random_grow_schedule_fixed_router_and_inference_k():
    assert [grow_k(t, 4) for t in (0.0, 0.24, 0.25, 0.5, 0.99, 1.0)] == [1, 1, 2, 3, 4, 4]
    assert grow_k(None, 4) == 4
    layer = PlainMoEFFN(6, 8, 4, 2, router="random_grow")
    assert "rule.fixed" in layer.state_dict() and not any(n.endswith("fixed") for n, _ in layer.named_parameters())
    h = torch.randn(30, 6)
    layer.train()
    set_progress(nn.Sequential(layer), 0.3)  # k = 1 + floor(0.3 * 4) = 2
    layer(h)
    assert torch.bincount(layer.last_routing.dispatch.tokens).tolist() == [2] * 30
    set_progress(nn.Sequential(layer), 0.8)
    layer(h)
    d = layer.last_routing.dispatch
    assert torch.bincount(d.tokens).tolist() == [4] * 30
    logits = h @ layer.rule.fixed.t()
    top, _idx = logits.topk(4, -1)
    torch.testing.assert_close(d.weights.reshape(30, 4), F.softmax(top, -1))
    layer.eval()
    layer(h)
    assert torch.bincount(layer.last_routing.dispatch.tokens).tolist() == [2] * 30  # moe_top_k


# invariants over every router ------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_one_expert_with_k1_equals_a_plain_ffn(name):
    torch.manual_seed(6)
    ffn = nn.Sequential(nn.Linear(6, 8), nn.GELU(), nn.Linear(8, 6))
    rule = ROUTERS[name](6, 1, 0, None, True, {})
    rule.set_active(6, RouteSettings(1))
    state = RoutingState(ROUTERS[name].shared_modules({}))
    gate = nn.Linear(6, 1, bias=False)
    h = torch.randn(11, 6)
    d = rule.route(h, gate, RouteSettings(1, 1, capacity=1.0 if name == "expert_choice" else None), state)
    torch.testing.assert_close(run_dispatch(h, d.tokens, d.experts, d.weights, [ffn], 6), ffn(h))


LEARNED = ("topk", "expert_choice", "top_p", "null_experts", "recurrent")


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_gradients_reach_router_and_experts(name):
    torch.manual_seed(7)
    space = moe_transformer_lm_space("g", n_layer=(2, 2), d_model=(16,), n_head=(2,), ffn=(16,), moe_experts=(4,),
                                     moe_top_k=(2,), moe_router=(name,), moe_top_p=(0.7,), moe_null=(1,))
    net = TransformerLM(space, vocab_size=11, context=8, router_options={"topk": {"z_loss": 0.1}}).train()
    x = net.example_input(4, 8)
    loss = F.cross_entropy(net(x).flatten(0, 1), x.flatten()) + 0.01 * net.aux_loss()
    loss.backward()
    moe = net.blocks[1].moe
    used = set(moe.last_routing.dispatch.experts.tolist())
    assert len(used) >= 2
    for e, expert in enumerate(moe.experts):
        g = expert.ffn_in.bank.weight.grad
        assert (g is not None and g.abs().sum() > 0) == (e in used)
    if name in LEARNED:
        own = [p for p in moe.rules[name].parameters()]
        grads = own if name == "recurrent" else [moe.router.bank.weight]
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in grads)
    if name == "recurrent":
        assert all(p.grad.abs().sum() > 0 for p in net.routing_shared.parameters())


def test_every_router_extracts_to_a_plain_module_with_equal_outputs():
    space = moe_transformer_lm_space("x", n_layer=(1, 3), d_model=(16, 24), n_head=(2,), ffn=(16, 32), moe_experts=(1, 2, 4),
                                     moe_top_k=(1, 2), moe_router=tuple(sorted(ROUTERS)), moe_top_p=(0.5, 0.9),
                                     moe_capacity=(1.0, 2.0), moe_null=(0, 1, 2))
    torch.manual_seed(8)
    net = TransformerLM(space, vocab_size=19, context=12).eval()
    x = net.example_input(3, 12)
    seen = set()
    for arch in space.sample_many(60, seed=3):
        net.set_arch(arch)
        sub = net.extract(arch).eval()
        assert (net(x) - sub(x)).abs().max().item() <= 1e-5
        assert not any(type(m).__name__.startswith("Elastic") for m in sub.modules())
        seen.update(la["moe_router"] for la in arch["layers"] if la["moe_experts"] > 1)
    assert seen == set(ROUTERS)


# errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "match"), [
    ({"experts": 4, "top_k": 5}, r"^layers\[i\]\.moe_top_k: 5; allowed: integers 1\.\.4"),
    ({"experts": 4, "top_k": 1, "router": "top_p", "top_p": 1.5}, r"^layers\[i\]\.moe_top_p: 1\.5; allowed: a number in \(0, 1\]"),
    ({"experts": 4, "top_k": 1, "router": "top_p", "top_p": 0.0}, r"^layers\[i\]\.moe_top_p: 0\.0"),
    ({"experts": 4, "top_k": 1, "capacity": 0.0}, r"^layers\[i\]\.moe_capacity: 0\.0; allowed: a finite number > 0"),
    ({"experts": 4, "top_k": 1, "capacity": -1.0}, r"^layers\[i\]\.moe_capacity: -1\.0"),
    ({"experts": 4, "top_k": 1, "router": "switch"}, r"^layers\[i\]\.moe_router: unknown router 'switch'; allowed: expert_choice"),
    ({"experts": 4, "top_k": 1, "null": -1}, r"^layers\[i\]\.moe_null: -1; allowed: integers >= 0"),
])
def test_bad_settings_are_one_line_errors_naming_the_parameter(kwargs, match):
    with pytest.raises(ArchlabError, match=match) as info:
        PlainMoEFFN(8, 8, **kwargs)
    assert "\n" not in str(info.value)


def _space(**layer) -> SearchSpace:
    return SearchSpace("t", n_layer=IntRange(1, 2), d_model=Choice(8),
                       layers=PerLayer("n_layer", n_head=Choice(2), ffn=Choice(8), moe_experts=Choice(1, 2), **layer))


@pytest.mark.parametrize(("layer", "match"), [
    ({"moe_router": Choice("topk", "hash")}, r"layers\[i\]\.moe_router: unknown router 'hash'"),
    ({"moe_top_p": Choice(0.5, 1.2)}, r"layers\[i\]\.moe_top_p: .*numbers in \(0, 1\]"),
    ({"moe_capacity": Choice(0.0, 1.0)}, r"layers\[i\]\.moe_capacity: .*numbers > 0"),
    ({"moe_null": Choice(-1, 1)}, r"layers\[i\]\.moe_null: .*integers >= 0"),
])
def test_bad_spaces_name_the_field(layer, match):
    with pytest.raises(ArchlabError, match=match):
        TransformerLM(_space(**layer), vocab_size=5, context=4)
    with pytest.raises(ArchlabError, match=r"router_options: unknown router 'nope'"):
        TransformerLM(_space(), vocab_size=5, context=4, router_options={"nope": {}})
    with pytest.raises(ArchlabError, match=r"router_options\['topk'\]: unknown option 'zloss'"):
        ElasticMoEFFN(8, 8, 2, router_options={"topk": {"zloss": 1.0}})


def test_adding_a_router_is_one_registered_class():
    @register_router("first_expert_test")
    class FirstExpert(Router):
        def route(self, x, gate, settings, state):
            from archlab.supernets.routers import Dispatch

            n = x.shape[0]
            return Dispatch(torch.arange(n), torch.zeros(n, dtype=torch.long), torch.ones(n), n, settings.experts)

    try:
        layer = PlainMoEFFN(6, 8, 3, 1, router="first_expert_test")
        h = torch.randn(5, 6)
        torch.testing.assert_close(layer(h), layer.experts[0](h))
    finally:
        del ROUTERS["first_expert_test"]


def test_trainer_step_runs_thor_two_passes_with_the_consistency_loss():
    from archlab.supernets.training.step import _Step

    space = moe_transformer_lm_space("th", n_layer=(1, 1), d_model=(16,), n_head=(2,), ffn=(16,), moe_experts=(1, 4),
                                     moe_top_k=(1,), moe_router=("stochastic", "topk"))
    torch.manual_seed(9)
    net = TransformerLM(space, vocab_size=11, context=8, router_options={"stochastic": {"alpha": 2.0}}).train()
    x, y = net.example_input(3, 8), torch.randint(0, 11, (3, 8))

    class _Task:
        def loss(self, logits, target):
            return F.cross_entropy(logits.flatten(0, 1), target.flatten())

    arch = {"n_layer": 1, "d_model": 16, "layers": [{"n_head": 2, "ffn": 16, "moe_experts": 4, "moe_top_k": 1,
                                                     "moe_router": "stochastic"}]}
    torch.manual_seed(10)
    ctx = _Step(net, net, _Task(), x, y, lambda: torch.autocast("cpu", enabled=False), None, 0.01)
    ctx.backward(ctx.loss(ctx.forward(arch)))
    got = [p.grad.clone() for p in net.parameters() if p.grad is not None]
    net.zero_grad()
    torch.manual_seed(10)
    out1 = net(x)
    out2 = net(x)
    ce = _Task().loss
    (0.5 * (ce(out1, y) + ce(out2, y)) + 2.0 * symmetric_kl(out1, out2)).backward()
    want = [p.grad.clone() for p in net.parameters() if p.grad is not None]
    assert len(got) == len(want) and all(torch.allclose(a, b, atol=1e-6) for a, b in zip(got, want))
    # a topk arch takes one pass
    arch["layers"][0]["moe_router"] = "topk"
    ctx = _Step(net, net, _Task(), x, y, lambda: torch.autocast("cpu", enabled=False), None, 0.01)
    ctx.forward(arch)
    assert ctx._thor is None


def test_saved_and_loaded_subnets_keep_their_routers(tmp_path):
    from archlab.supernets.export import load_subnet, save_subnet

    space = moe_transformer_lm_space("s", n_layer=(2, 2), d_model=(16,), n_head=(2,), ffn=(16,), moe_experts=(4,),
                                     moe_top_k=(1, 2), moe_router=("recurrent", "random_grow", "null_experts"), moe_null=(2,))
    torch.manual_seed(12)
    net = TransformerLM(space, vocab_size=11, context=8, router_options={"recurrent": {"hidden": 8}}).eval()
    x = net.example_input(2, 8)
    for i, routers in enumerate([("recurrent", "random_grow"), ("null_experts", "recurrent")]):
        arch = space.validate({"n_layer": 2, "d_model": 16, "layers": [
            {"n_head": 2, "ffn": 16, "moe_experts": 4, "moe_top_k": 2, "moe_router": r, "moe_null": 2} for r in routers]})
        net.set_arch(arch)
        back = load_subnet(save_subnet(net.extract(arch), tmp_path / f"m{i}")).eval()
        assert [b.moe.router_name for b in back.blocks] == list(routers)
        assert (back(x) - net(x)).abs().max().item() <= 1e-6
