"""Mixture banks inside the real model families: collapse on extraction, routing, config."""

from __future__ import annotations

import pytest
import torch

from archlab.core.errors import ArchlabError
from archlab.supernets import ConvNet, MLPNet, Supernet, TransformerLM
from archlab.supernets.layers.mos import MixtureBank


def _transformer(sharing, roles):
    return TransformerLM(None, vocab_size=17, context=12, sharing=sharing, roles=roles)


def _convnet(sharing, roles):
    return ConvNet(None, num_classes=5, in_channels=1, image_size=8, stem_channels=8,
                   stage_channels=[8, 12, 16], head_channels=16, sharing=sharing, roles=roles)


def _mlp(sharing, roles):
    return MLPNet(None, in_features=10, num_classes=4, sharing=sharing, roles=roles)


BUILDERS = {"transformer_lm": _transformer, "convnet": _convnet, "mlp": _mlp}


@pytest.mark.parametrize("family", list(BUILDERS))
@pytest.mark.parametrize("sharing", ["mos-layer", "mos-neuron"])
@pytest.mark.parametrize("roles", [None, "all"])
def test_extract_collapses_the_mixture(family, sharing, roles):
    torch.manual_seed(0)
    net = BUILDERS[family](sharing, roles)
    assert any(isinstance(m, MixtureBank) for m in net.modules())
    if family == "convnet":  # BatchNorm: give the running statistics something non-trivial
        net.train()
        with torch.no_grad():
            for seed in range(2):
                net.set_arch(net.space.sample(seed))
                net(net.example_input(8))
    net.eval()
    for seed in range(3):
        arch = net.space.sample(100 + seed)
        net.set_arch(arch)
        x = net.example_input(4)
        with torch.no_grad():
            ref = net(x)
            plain = net.extract(arch).eval()
            out = plain(x)
        assert not any(isinstance(m, MixtureBank) for m in plain.modules())
        assert not any("router" in name for name, _ in plain.named_parameters())
        assert (out - ref).abs().max().item() <= 1e-5, (family, sharing, arch.key)


@pytest.mark.parametrize("sharing", ["mos-layer", "mos-neuron"])
def test_architecture_changes_the_mixed_weights(sharing):
    torch.manual_seed(0)
    net = _transformer(sharing, None)
    bank = net.blocks[0].ffn_in.bank
    assert isinstance(bank, MixtureBank)
    index = (slice(0, 128), slice(0, 64))
    a = {"n_layer": 1, "d_model": 64, "layers": [{"n_head": 2, "ffn": 128}]}
    b = {"n_layer": 2, "d_model": 64, "layers": [{"n_head": 2, "ffn": 128}, {"n_head": 4, "ffn": 512}]}
    with torch.no_grad():
        net.set_arch(a)
        wa, _ = bank(index)
        net.set_arch(b)
        wb, _ = bank(index)
    assert (wa - wb).abs().max() > 1e-6  # same slice, other architecture: other weights


def test_config_round_trip_keeps_sharing():
    net = _mlp("mos-neuron", None)
    net2 = Supernet.from_config(net.config())
    assert net2.sharing == "mos-neuron"
    assert net.state_dict().keys() == net2.state_dict().keys()
    with pytest.raises(RuntimeError):  # state of another sharing mode does not load silently
        _mlp("entangled", None).load_state_dict(net.state_dict())


def test_unknown_sharing_is_a_clear_error():
    with pytest.raises(ArchlabError, match="mos-layer"):
        _mlp("mos-layr", None)
