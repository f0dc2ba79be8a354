"""Routing metrics, active costs per token, the training log and the study's routing metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from archlab.search.metric_sources import MetricSources, SearchContext
from archlab.search.objectives import OBJECTIVES, resolve, routing_metrics
from archlab.spaces.library import moe_transformer_lm_space
from archlab.supernets import TransformerLM
from archlab.supernets.families.transformer_plain import PlainTransformerLM
from archlab.supernets.layers.moe import PlainMoEFFN, RoutingRecord
from archlab.supernets.layers.routing_metrics import (
    active_costs,
    flat_metrics,
    layer_metrics,
    measure_routing,
)
from archlab.supernets.routers import ROUTERS, Dispatch
from archlab.supernets.tasks.text import CharLMTask
from archlab.supernets.training.trainer import TrainConfig, train


def test_layer_metrics_hand_checked():
    # 4 tokens, 3 experts: token 0 -> {0, 1}, token 1 -> {0}, token 2 -> none (dropped), token 3 -> {0}
    probs = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5], [0.6, 0.2, 0.2]])
    d = Dispatch(torch.tensor([0, 0, 1, 3]), torch.tensor([0, 1, 0, 0]), torch.ones(4), 4, 3, probs=probs,
                 dropped=torch.tensor([False, False, True, False]), null_slots=torch.tensor([0, 1, 2, 1]),
                 aux={"load_balance": torch.tensor(1.25)})
    m = layer_metrics(RoutingRecord("topk", d))
    assert m["load"] == [0.75, 0.25, 0.0]
    counts = np.array([3.0, 1.0, 0.0])
    assert m["load_cv"] == pytest.approx(counts.std() / counts.mean())
    assert m["experts_per_token"] == 1.0 and m["experts_hist"] == [0.25, 0.5, 0.25, 0.0]
    assert m["dropped"] == 0.25
    ent = -(probs * probs.clamp_min(1e-30).log()).sum(-1).mean()
    assert m["entropy"] == pytest.approx(float(ent))
    assert m["null_share"] == pytest.approx(4 / (4 + 4))
    assert m["aux"] == {"load_balance": 1.25}
    flat = flat_metrics({1: m})
    assert flat["routing.load_cv"] == m["load_cv"] and flat["routing.layers.1.load.0"] == 0.75
    assert flat["routing.layers.1.experts_hist.2"] == 0.25 and flat["routing.aux.load_balance"] == 1.25


def test_expert_choice_layer_reports_zero_load_cv_and_its_drops():
    torch.manual_seed(0)
    layer = PlainMoEFFN(8, 8, 4, 1, router="expert_choice", capacity=1.0)
    layer(torch.randn(64, 8))
    m = layer_metrics(layer.last_routing)
    assert m["load_cv"] == 0.0 and m["load"] == [0.25] * 4
    assert m["experts_per_token"] == 1.0
    assert m["dropped"] == pytest.approx(m["experts_hist"][0])


def _lm(layers, **extra) -> PlainTransformerLM:
    torch.manual_seed(1)
    return PlainTransformerLM({"vocab_size": 11, "context": 8, "head_dim": 8, "d_model": 16, "layers": layers, **extra})


def test_active_costs_count_only_the_experts_tokens_used():
    x = torch.randint(0, 11, (4, 8))
    model = _lm([{"n_head": 2, "ffn": 32}, {"n_head": 2, "ffn": 32, "moe_experts": 4, "moe_top_k": 2}])
    c = active_costs(model, x)
    d, ffn, inner, ctx = 16, 32, 16, 8
    attn = 4 * d * inner + 2 * ctx * inner
    assert c["macs_per_token"] == 2 * attn + 2 * d * ffn + 2 * (2 * d * ffn) + d * 4 + d * 11
    expert = 2 * d * ffn + ffn + d
    assert c["params"] == sum(p.numel() for p in model.parameters())
    assert c["active_params"] == c["params"] - 2 * expert and c["experts_per_token"] == 2.0
    # a data-dependent router: the measured mean number of experts
    top_p = _lm([{"n_head": 2, "ffn": 32, "moe_experts": 4, "moe_top_k": 1, "moe_router": "top_p", "moe_top_p": 0.6}])
    c = active_costs(top_p, x)
    ept = measure_routing(top_p, [x])[0]["experts_per_token"]
    assert 1.0 <= ept <= 4.0 and c["experts_per_token"] == ept
    assert c["active_params"] == pytest.approx(c["params"] - (4 - ept) * expert)
    assert c["macs_per_token"] == pytest.approx(attn + ept * 2 * d * ffn + d * 4 + d * 11)


@pytest.fixture()
def char_task(tmp_path) -> CharLMTask:
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 80, encoding="utf-8")
    return CharLMTask(text, context=12)


def _space():
    return moe_transformer_lm_space("rm", n_layer=(1, 2), d_model=(16,), n_head=(2,), ffn=(16,), moe_experts=(1, 4),
                                    moe_top_k=(1, 2), moe_router=tuple(sorted(ROUTERS)), moe_capacity=(1.0,), moe_null=(0, 2))


def test_training_log_has_routing_metrics(char_task):
    torch.manual_seed(2)
    # ordered choices only: the sandwich rule needs a largest/smallest arch (router names have none)
    space = moe_transformer_lm_space("rt", n_layer=(1, 2), d_model=(16,), n_head=(2,), ffn=(16,), moe_experts=(1, 4),
                                     moe_top_k=(1, 2), moe_capacity=(1.0, 2.0))
    net = TransformerLM(space, **char_task.model_kwargs())
    logged = []
    cfg = TrainConfig(steps=4, batch_size=4, lr=1e-3, warmup_steps=1, checkpoint_every=0, log_every=0, eval_batches=1,
                      num_threads=1, device="cpu", strategy_options={"n_random": 1})
    train(net, char_task, cfg, on_step=lambda step, archs, out: logged.append(out))
    routed = [r for r in logged if "routing.load_cv" in r]
    assert routed, "no step logged routing metrics"
    for r in routed:
        assert r["routing.experts_per_token"] >= 0 and 0 <= r["routing.dropped"] <= 1
        assert not any(".layers." in k for k in r)


def test_inherited_objective_records_routing_metrics_of_each_arch(char_task):
    torch.manual_seed(3)
    space = _space()
    net = TransformerLM(space, **char_task.model_kwargs())
    ctx = SearchContext(space, MetricSources(supernet=lambda: net, task=char_task, name="t"))
    names = routing_metrics(space)
    assert "routing.layers.1.load.3" in names and "routing.layers.1.experts_hist.4" in names
    assert all(n in OBJECTIVES for n in names) and "routing" not in OBJECTIVES
    arch = space.validate({"n_layer": 2, "d_model": 16, "layers": [
        {"n_head": 2, "ffn": 16, "moe_experts": 1, "moe_top_k": 1, "moe_router": "topk", "moe_capacity": 1.0, "moe_null": 0},
        {"n_head": 2, "ffn": 16, "moe_experts": 4, "moe_top_k": 1, "moe_router": "expert_choice", "moe_capacity": 1.0,
         "moe_null": 0}]})
    loss = resolve("inherited", ctx)(arch)
    assert math.isfinite(loss)
    assert resolve("routing.layers.1.load_cv", ctx)(arch) == 0.0  # expert choice at capacity 1
    assert resolve("routing.experts_per_token", ctx)(arch) == pytest.approx(1.0)
    assert math.isnan(resolve("routing.layers.0.load_cv", ctx)(arch))  # a dense layer does not route
    loads = [resolve(f"routing.layers.1.load.{e}", ctx)(arch) for e in range(4)]
    assert loads == pytest.approx([0.25] * 4)
    x = next(iter(char_task.eval_batches("val", 1)))[0]
    costs = active_costs(net.extract(arch), x)
    assert resolve("routing.active_macs", ctx)(arch) == costs["macs_per_token"]
    assert resolve("routing.active_params", ctx)(arch) == costs["active_params"] < costs["params"]
