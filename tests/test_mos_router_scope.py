"""router_scope="ffn": one router per FFN shared by its two linears; mixing weights logged."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archlab.supernets import TransformerLM
from archlab.supernets.layers.mos import MixtureBank, mixing_log
from archlab.supernets.training.config import TrainConfig
from archlab.supernets.training.optim import make_optimizer


def _net(sharing, scope):
    torch.manual_seed(0)
    space = TransformerLM.default_space()
    return TransformerLM(space, vocab_size=11, context=8, sharing=sharing,
                         sharing_options={"router_scope": scope, "router_hidden": 8}), space


def _ffn_pairs(net):
    banks = {n.removesuffix(".bank"): m for n, m in net.named_modules() if isinstance(m, MixtureBank)}
    return [(banks[k], banks[k.replace("ffn_in", "ffn_out")]) for k in banks if k.endswith("ffn_in")]


@pytest.mark.parametrize("sharing", ["mos-layer", "mos-neuron"])
def test_ffn_scope_shares_one_router_per_ffn(sharing):
    net, space = _net(sharing, "ffn")
    per_weight, _ = _net(sharing, "weight")
    pairs = _ffn_pairs(net)
    assert pairs
    for fin, fout in pairs:
        assert fout.owner is fin and fin.owner is fin
        assert not any(".router." in n for n, _ in fout.named_parameters())
    n_router = sum(p.numel() for n, p in net.named_parameters() if ".router." in n)
    n_router_w = sum(p.numel() for n, p in per_weight.named_parameters() if ".router." in n)
    assert n_router < n_router_w
    arch = space.sample(3)
    net.set_arch(arch)
    x = torch.randint(0, 11, (2, 8))
    net(x)
    fin, fout = pairs[0]
    if sharing == "mos-layer":
        assert torch.equal(fin.mixing_weights(), fout.mixing_weights())
    else:
        idx_in, idx_out = fin._last_index, fout._last_index
        assert idx_in[0] == idx_out[1]  # ffn_in's active rows are ffn_out's active columns
        a_in, a_out = fin.mixing_weights(idx_in), fout.mixing_weights(idx_out)
        assert torch.equal(a_in, a_out)
        # ffn_out mixes its columns by those weights; its bias by their mean
        w, b = fout(idx_out)
        sliced = fout.experts[(slice(None), *idx_out)]
        want = sum(a_out[:, e][None, :] * sliced[e] for e in range(fout.num_experts))
        assert torch.allclose(w, want, atol=1e-6)
        assert torch.allclose(b, a_out.mean(0) @ fout.bias_experts[:, idx_out[0]], atol=1e-6)
    # gradients reach the shared router through both linears; it gets no weight decay
    loss = F.cross_entropy(net(x).reshape(-1, 11), x.reshape(-1))
    loss.backward()
    assert all(p.grad is not None for p in fin.router.parameters())
    opt = make_optimizer(net, TrainConfig(weight_decay=0.1))
    decay = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert not any(id(p) in decay for p in fin.router.parameters())
    # extraction collapses the mixture: same outputs
    net.eval()
    with torch.no_grad():
        assert torch.allclose(net.extract(arch)(x), net(x), atol=1e-5)


def test_mixing_log_reports_weights_and_entropy_per_layer():
    net, space = _net("mos-neuron", "ffn")
    net.set_arch(space.largest())
    net(torch.randint(0, 11, (2, 8)))
    log = mixing_log(net)
    owners = [n for n, m in net.named_modules() if isinstance(m, MixtureBank) and m.owner is m]
    assert len([k for k in log if k.endswith("/entropy")]) == len(owners)
    for k, v in log.items():
        if k.endswith("/weights"):
            assert sum(v) == pytest.approx(1.0, abs=1e-4) and len(v) == 2
        else:
            assert 0.0 <= v <= torch.log(torch.tensor(2.0)).item() + 1e-6
    with pytest.raises(Exception, match="router_scope"):
        _net("mos-layer", "model")
