"""Soft architectures on the weight bank: one-hot equals the discrete subnet, gradients reach
the architecture parameters (finite differences), the entangled mix costs one op of memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from archlab.core.errors import ArchlabError
from archlab.spaces.errors import SpaceError
from archlab.spaces.library import (
    cell_space,
    mlp_space,
    mobilenet_v3_space,
    moe_transformer_lm_space,
    transformer_lm_space,
)
from archlab.spaces.soft import SoftLayout
from archlab.supernets import ElasticConv2d, ElasticLinear
from archlab.supernets.families import ConvNet, MLPNet, TransformerLM
from archlab.supernets.soft.memory import mixed_op_memory
from archlab.supernets.soft.ops import (
    SoftConv2d,
    SoftLinear,
    clear_soft,
    expected_encoding,
    is_soft,
    kernel_mask,
    one_hot_probs,
    set_soft,
    width_mask,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("space", [transformer_lm_space(), mobilenet_v3_space(n_stages=3, width_mult=(0.5, 1.0)),
                                   mlp_space(activation=("relu", "gelu")), cell_space()], ids=lambda s: s.name)
def test_layout_one_hot_round_trips_and_expected_encoding_is_the_encoding(space):
    layout = SoftLayout(space)
    for seed in range(6):
        arch = space.sample(seed)
        soft = layout.one_hot(arch)
        assert soft.argmax() == arch
        np.testing.assert_allclose(soft.expected_encoding(), space.encode(arch, normalized=True), atol=1e-6)
    if space.name == "cell":  # a product space: uniform expectation = mean encoding of all archs
        mean = np.mean([space.encode(a, normalized=True) for a in space.enumerate()], axis=0)
        np.testing.assert_allclose(layout.uniform().expected_encoding(), mean, atol=1e-6)


def test_layout_rejects_bad_vectors_naming_the_slot():
    layout = SoftLayout(transformer_lm_space())
    vecs = layout.uniform().to_dict()
    vecs["layers.1.ffn"] = [0.5, 0.6, -0.1]
    with pytest.raises(SpaceError, match=r"layers\.1\.ffn"):
        layout.from_vectors(vecs)
    del vecs["layers.1.ffn"]
    with pytest.raises(SpaceError, match=r"no probabilities for slot 'layers\.1\.ffn'"):
        layout.from_vectors(vecs)


NETS = [
    ("mlp", lambda: MLPNet(mlp_space(n_layer=(0, 3), activation=("relu", "gelu")))),
    ("convnet", lambda: ConvNet()),
    ("convnet-width", lambda: ConvNet(ConvNet.default_space(width_mult=(0.5, 1.0)))),
    ("transformer", lambda: TransformerLM(context=16)),
    ("transformer-untied-mos-layer", lambda: TransformerLM(context=16, tie_weights=False, sharing="mos-layer")),
    ("mlp-mos-neuron", lambda: MLPNet(sharing="mos-neuron")),
]


def _input(net):
    if net.family == "transformer_lm":
        return net.example_input(2, 16)
    return net.example_input(2).double()


@pytest.mark.parametrize("make", [m for _, m in NETS], ids=[n for n, _ in NETS])
def test_one_hot_soft_forward_equals_the_discrete_subnet(make):
    torch.manual_seed(0)
    net = make().double().train()
    x = _input(net)
    exact = net.sharing == "entangled"
    for seed in range(3):
        arch = net.space.sample(seed)
        net.set_arch(arch)
        expected = net(x)
        set_soft(net, one_hot_probs(net, arch, torch.float64))
        assert is_soft(net)
        got = net(x)
        clear_soft(net)
        assert not is_soft(net) and net.arch == arch
        if exact:  # the same numbers up to float64 rounding (BLAS may sum a padded row in another order)
            torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)
        else:  # the router reads the float64 expectation, the discrete path the float32 encoding
            torch.testing.assert_close(got, expected, atol=1e-8, rtol=1e-8)
        torch.testing.assert_close(net(x), expected, atol=0, rtol=0)


def test_soft_mix_of_two_archs_is_between_and_extract_after_soft_is_the_discrete_subnet():
    torch.manual_seed(0)
    net = MLPNet().double().eval()
    layout = SoftLayout(net.space)
    a = net.space.sample(1)
    probs = {s.path: torch.tensor(v) for s, v in zip(layout.slots, layout.uniform().vectors)}
    set_soft(net, probs)
    y = net(net.example_input(3).double())
    assert torch.isfinite(y).all()
    clear_soft(net)
    plain = net.extract(a)
    net.set_arch(a)
    x = net.example_input(3).double()
    torch.testing.assert_close(plain.double()(x), net(x))


def test_moe_spaces_are_refused_with_a_clear_error():
    net = TransformerLM(moe_transformer_lm_space(), context=8)
    probs = {s.path: torch.full((s.size,), 1.0 / s.size) for s in SoftLayout(net.space).slots}
    with pytest.raises(ArchlabError, match="moe_experts"):
        set_soft(net, probs)


def test_expected_encoding_is_differentiable_and_matches_numpy():
    space = transformer_lm_space()
    layout = SoftLayout(space)
    rng = np.random.default_rng(0)
    vecs = {s.path: rng.dirichlet(np.ones(s.size)) for s in layout.slots}
    soft = layout.from_vectors(vecs)
    probs = {k: torch.tensor(v, requires_grad=True) for k, v in vecs.items()}
    enc = expected_encoding(layout, probs)
    np.testing.assert_allclose(enc.detach().numpy(), soft.expected_encoding(), rtol=1e-6, atol=1e-7)
    enc.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in probs.values())


def test_arch_gradients_match_finite_differences_on_a_tiny_layer():
    torch.manual_seed(0)
    lin = ElasticLinear(4, 6, factory=None).double()
    conv = ElasticConv2d(3, 3, 5).double()
    x = torch.randn(2, 4, dtype=torch.float64)
    img = torch.randn(1, 3, 6, 6, dtype=torch.float64)

    def loss(width_logits, kernel_logits):
        m = width_mask(6, [F.softmax(width_logits, 0)], [(2, 4, 6)])
        lin.soft = SoftLinear(m, None)
        conv.soft = SoftConv2d(None, None, kernel_mask(5, F.softmax(kernel_logits, 0), (1, 3, 5)))
        try:
            return (lin(x).square().sum() + conv(img).square().mean()).reshape(1)
        finally:
            lin.soft = conv.soft = None

    wl = torch.randn(3, dtype=torch.float64, requires_grad=True)
    kl = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(loss, (wl, kl), eps=1e-6, atol=1e-6)
    loss(wl, kl).sum().backward()
    assert wl.grad.abs().sum() > 0 and kl.grad.abs().sum() > 0


def test_arch_gradients_through_a_whole_soft_supernet_match_finite_differences():
    torch.manual_seed(0)
    net = MLPNet(mlp_space(n_layer=(1, 2), width=(4, 8)), in_features=5, num_classes=3).double()
    layout = SoftLayout(net.space)
    x = torch.randn(4, 5, dtype=torch.float64)
    sizes = [s.size for s in layout.slots]

    def loss(flat):
        parts = torch.split(flat, sizes)
        set_soft(net, {s.path: F.softmax(p, 0) for s, p in zip(layout.slots, parts)})
        return net(x).logsumexp(-1).sum().reshape(1)

    flat = torch.randn(sum(sizes), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(loss, (flat,), eps=1e-6, atol=1e-6)
    clear_soft(net)


def test_entangled_mix_uses_the_memory_of_one_op():
    one = mixed_op_memory(channels=16, layers=1, batch=8, size=32)
    assert one["entangled_over_one_op"] <= 1.15, one
    stack = mixed_op_memory(channels=16, layers=8, batch=8, size=32)
    assert stack["entangled_over_one_op"] <= 1.15, stack
    assert stack["entangled_over_per_candidate"] <= 1 / 3, stack
