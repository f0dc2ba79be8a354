"""Every weight bank trains like the entangled one: a step leaves what the step's subnet did
not use (parameters and optimiser moments) bit-identical; routers and biases get no decay."""

from __future__ import annotations

import pytest
import torch

from archlab.spaces.library import mlp_space
from archlab.supernets.families.mlp import MLPNet
from archlab.supernets.layers.banks import BANKS
from archlab.supernets.layers.mos import MixtureBank
from archlab.supernets.training.config import TrainConfig
from archlab.supernets.training.optim import SliceAdamW, make_optimizer

SPACE = mlp_space("t", n_layer=(1, 3), width=(4, 8, 12))


def _step(net, opt, arch, seed):
    net.set_arch(arch)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 10, generator=g), torch.randint(0, 3, (16,), generator=g)
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(net(x), y).backward()
    opt.step()


def _snapshot(net, opt):
    params = {n: p.detach().clone() for n, p in net.named_parameters()}
    state = opt.state  # syncs dense workspaces
    names = {id(p): n for n, p in net.named_parameters()}
    moments = {names[id(p)]: {k: v.clone() for k, v in s.items() if k != "step"} for p, s in state.items()}
    return params, moments


@pytest.mark.parametrize("sharing", sorted(BANKS))
@pytest.mark.parametrize("fused", [False, True])
def test_outside_the_active_box_nothing_moves(sharing, fused):
    torch.manual_seed(0)
    net = MLPNet(SPACE, in_features=10, num_classes=3, sharing=sharing, sharing_options={"experts": 2}
                 if sharing != "entangled" else None)
    cfg = TrainConfig(lr=1e-2, weight_decay=0.1)
    opt = make_optimizer(net, cfg)
    assert isinstance(opt, SliceAdamW)
    if fused:
        for g in opt.param_groups:
            g["fused"] = True
    _step(net, opt, SPACE.largest(), 1)          # every entry gets moments
    before_p, before_m = _snapshot(net, opt)
    small = SPACE.validate({"n_layer": 1, "layers": [{"width": 4}]})
    _step(net, opt, small, 2)                      # uses hidden[0][:4, :10] and the head's [:, :4]
    after_p, after_m = _snapshot(net, opt)
    active = {"hidden.0": (slice(0, 4), slice(0, 10)), "classifier": (slice(0, 3), slice(0, 4))}
    checked = 0
    for name, p0 in before_p.items():
        layer = name.split(".bank.")[0] if ".bank." in name else name.rsplit(".", 1)[0]
        box = active.get(layer)
        leaf = name.rsplit(".", 1)[-1]
        if ".router." in name:
            continue  # the router is used whole by every architecture
        lead = (slice(None),) if leaf in ("experts", "bias_experts") else ()
        keep = torch.ones_like(p0, dtype=torch.bool)
        if box is not None:
            keep[lead + (box if leaf in ("weight", "experts") else box[:1])] = False
        for what, a, b in [("param", p0, after_p[name])] + [
            (k, before_m[name][k], after_m[name][k]) for k in before_m.get(name, {})
        ]:
            assert torch.equal(a[keep], b[keep]), f"{sharing}: {name} {what} moved outside the active box"
            checked += 1
        if box is not None:
            assert not torch.equal(p0[~keep], after_p[name][~keep]), f"{name}: the active box did not move"
    assert checked >= 20


@pytest.mark.parametrize("sharing", ["mos-layer", "mos-neuron"])
def test_router_and_stacked_biases_get_no_weight_decay(sharing):
    torch.manual_seed(0)
    net = MLPNet(SPACE, in_features=10, num_classes=3, sharing=sharing)
    opt = make_optimizer(net, TrainConfig(weight_decay=0.1))
    decay = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    banks = [m for m in net.modules() if isinstance(m, MixtureBank)]
    assert banks
    for bank in banks:
        assert id(bank.experts) in decay
        assert id(bank.bias_experts) not in decay
        for p in bank.router.parameters():
            assert id(p) not in decay
    names = {id(p): n for n, p in net.named_parameters()}
    assert all(names[i].endswith(("weight", "experts")) and ".router." not in names[i] for i in decay)
