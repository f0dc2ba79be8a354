"""Mixture-of-supernets weight banks, tested on a small elastic MLP built from BankFactory."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archlab.core.errors import ArchlabError
from archlab.spaces import Choice, IntRange, PerLayer, SearchSpace
from archlab.supernets.layers.banks import BankFactory, EntangledBank, set_arch_encoding
from archlab.supernets.layers.mos import LayerMixtureBank, NeuronMixtureBank

SPACE = SearchSpace(
    "tiny",
    n_layer=IntRange(1, 3),
    layers=PerLayer("n_layer", hidden=Choice(4, 8, 12)),
)
IN, OUT, HMAX = 5, 3, 12


class TinyElasticMLP(nn.Module):
    """A stack of elastic linears (role ffn_in) and an entangled head, driven by one bank factory."""

    def __init__(self, sharing: str, roles=None, **options) -> None:
        super().__init__()
        factory = BankFactory(sharing, SPACE.encoding_size, roles=roles, options=options)
        self.banks = nn.ModuleList(factory((HMAX, HMAX if i else IN), True, "ffn_in") for i in range(3))
        self.head = factory((OUT, HMAX), True, "head")
        self.arch = None

    def set_arch(self, arch) -> None:
        self.arch = SPACE.validate(arch)
        set_arch_encoding(self, torch.from_numpy(SPACE.encode(self.arch, normalized=True)))

    def shapes(self):
        widths = [IN] + [layer["hidden"] for layer in self.arch["layers"]]
        return [(slice(0, widths[i + 1]), slice(0, widths[i])) for i in range(len(widths) - 1)], widths[-1]

    def forward(self, x):
        idx, last = self.shapes()
        for bank, index in zip(self.banks, idx):
            w, b = bank(index)
            x = torch.relu(F.linear(x, w, b))
        w, b = self.head((slice(0, OUT), slice(0, last)))
        return F.linear(x, w, b)

    @torch.no_grad()
    def extract(self) -> nn.Sequential:
        """Plain nn.Linear layers holding the collapsed weights of the active arch."""
        idx, last = self.shapes()
        mods: list[nn.Module] = []
        for bank, index in zip(self.banks, idx):
            w, b = bank(index)
            lin = nn.Linear(w.shape[1], w.shape[0])
            lin.weight.copy_(w)
            lin.bias.copy_(b)
            mods += [lin, nn.ReLU()]
        w, b = self.head((slice(0, OUT), slice(0, last)))
        head = nn.Linear(last, OUT)
        head.weight.copy_(w)
        head.bias.copy_(b)
        return nn.Sequential(*mods, head)


def _bank(cls, shape=(6, 4), bias=True, **kw):
    bank = cls(shape, bias, "ffn_in", encoding_size=SPACE.encoding_size, **kw)
    return bank


def _enc(seed: int) -> torch.Tensor:
    return torch.from_numpy(SPACE.encode(SPACE.sample(seed), normalized=True))


@pytest.mark.parametrize("sharing", ["mos-layer", "mos-neuron"])
def test_router_weights_are_a_distribution_that_depends_on_the_arch(sharing):
    torch.manual_seed(0)
    net = TinyElasticMLP(sharing, experts=3)
    bank = net.banks[0]
    outs = []
    for arch in (SPACE.smallest(), SPACE.largest()):
        net.set_arch(arch)
        alpha = bank.mixing_weights((slice(0, 8), slice(0, IN))).detach()
        if sharing == "mos-layer":
            assert alpha.shape == (3,)
        else:
            assert alpha.shape == (8, 3)  # one distribution per active output neuron
            assert not torch.allclose(alpha[0], alpha[1])  # neurons route differently
        assert torch.all(alpha >= 0)
        torch.testing.assert_close(alpha.sum(-1), torch.ones(alpha.shape[:-1]))
        outs.append(alpha)
    assert (outs[0] - outs[1]).abs().max() > 1e-4  # different architectures, different weights


def test_layer_mix_equals_weighted_sum_of_sliced_experts():
    torch.manual_seed(1)
    bank = _bank(LayerMixtureBank, shape=(6, 4, 3, 3), experts=3)
    bank.set_arch_encoding(_enc(3))
    index = (slice(0, 4), slice(0, 2), slice(1, 2), slice(1, 2))  # centre crop of a conv kernel
    w, b = bank(index)
    alpha = bank.mixing_weights()
    ref_w = sum(alpha[i] * bank.experts[i][index] for i in range(3))
    ref_b = sum(alpha[i] * bank.bias_experts[i][:4] for i in range(3))
    assert w.shape == (4, 2, 1, 1)
    torch.testing.assert_close(w, ref_w)
    torch.testing.assert_close(b, ref_b)


def test_neuron_mix_is_row_wise():
    torch.manual_seed(2)
    bank = _bank(NeuronMixtureBank, shape=(6, 4), experts=2)
    bank.set_arch_encoding(_enc(4))
    index = (slice(0, 5), slice(0, 3))
    w, b = bank(index)
    alpha = bank.mixing_weights(index)  # (5, 2)
    full = bank.mixing_weights()  # (6, 2): slicing the router output = first rows
    torch.testing.assert_close(alpha, full[:5])
    for o in range(5):
        ref = alpha[o, 0] * bank.experts[0, o, :3] + alpha[o, 1] * bank.experts[1, o, :3]
        torch.testing.assert_close(w[o], ref)
        torch.testing.assert_close(b[o], alpha[o, 0] * bank.bias_experts[0, o] + alpha[o, 1] * bank.bias_experts[1, o])


@pytest.mark.parametrize("sharing", ["mos-layer", "mos-neuron"])
def test_gradients_reach_experts_and_router(sharing):
    torch.manual_seed(3)
    net = TinyElasticMLP(sharing)
    net.set_arch({"n_layer": 2, "layers": [{"hidden": 8}, {"hidden": 4}]})
    loss = net(torch.randn(7, IN)).pow(2).mean()
    loss.backward()
    bank = net.banks[0]
    g = bank.experts.grad
    assert g[:, :8, :IN].abs().sum(dim=(1, 2)).min() > 0  # every expert learns
    assert g[:, 8:].abs().sum() == 0  # inactive rows untouched
    assert bank.bias_experts.grad[:, :8].abs().sum() > 0
    for p in bank.router.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert net.banks[2].experts.grad is None  # third layer not active
    assert isinstance(net.head, EntangledBank)  # "head" is not a default mixture role


def test_soft_encoding_gets_a_gradient():
    """A differentiable (soft) architecture encoding flows through the router."""
    bank = _bank(LayerMixtureBank)
    enc = _enc(5).clone().requires_grad_(True)
    bank.set_arch_encoding(enc)
    w, _ = bank((slice(0, 6), slice(0, 4)))
    w.square().sum().backward()
    assert enc.grad is not None and enc.grad.abs().sum() > 0


@pytest.mark.parametrize("sharing", ["mos-layer", "mos-neuron"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_collapse_equals_supernet_output(sharing, seed):
    torch.manual_seed(seed)
    net = TinyElasticMLP(sharing, roles="all", experts=2).eval()
    arch = SPACE.sample(seed + 10)
    net.set_arch(arch)
    x = torch.randn(9, IN)
    with torch.no_grad():
        ref = net(x)
        plain = net.extract()
        out = plain(x)
    assert not any(isinstance(m, (LayerMixtureBank, NeuronMixtureBank)) for m in plain.modules())
    assert (out - ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize("sharing", ["mos-layer", "mos-neuron"])
def test_fixed_seed_identical_results(sharing):
    def run():
        torch.manual_seed(42)
        net = TinyElasticMLP(sharing)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
        gen = torch.Generator().manual_seed(0)
        for step in range(3):
            net.set_arch(SPACE.sample(step))
            loss = net(torch.randn(4, IN, generator=gen)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.set_arch(SPACE.largest())
        return net(torch.ones(2, IN)).detach()

    a, b = run(), run()
    assert torch.equal(a, b)


def test_factory_roles_and_defaults():
    f = BankFactory("mos-layer", SPACE.encoding_size)
    assert isinstance(f((4, 4), True, "ffn_out"), LayerMixtureBank)
    assert isinstance(f((4, 4, 1, 1), False, "conv_expand"), LayerMixtureBank)
    assert isinstance(f((4, 4), True, "attn_qkv"), EntangledBank)
    assert isinstance(f((4, 4, 3, 3), False, "conv"), EntangledBank)
    f_all = BankFactory("mos-neuron", SPACE.encoding_size, roles="all")
    assert isinstance(f_all((4, 4), True, "attn_qkv"), NeuronMixtureBank)
    assert set(LayerMixtureBank.default_roles) == {"ffn_in", "ffn_out", "conv_expand", "conv_project", "linear"}
    bank = BankFactory("mos-layer", SPACE.encoding_size, options={"experts": 4, "router_hidden": 16,
                                                                    "router_layers": 3})((4, 2), True, "ffn_in")
    assert bank.experts.shape == (4, 4, 2)
    linears = [m for m in bank.router.modules() if isinstance(m, nn.Linear)]
    assert [lin.out_features for lin in linears] == [16, 16, 4]


def test_same_init_starts_with_identical_experts():
    torch.manual_seed(0)
    bank = _bank(LayerMixtureBank, experts=3, init="same")
    assert torch.equal(bank.experts[0], bank.experts[2])
    assert torch.equal(bank.bias_experts[0], bank.bias_experts[1])
    indep = _bank(LayerMixtureBank, experts=3)
    assert not torch.equal(indep.experts[0], indep.experts[1])


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"experts": 0}, "experts"),
        ({"init": "zeros"}, "init"),
        ({"router_layers": 0}, "router_layers"),
        ({"expert": 2}, "unknown option 'expert'"),
    ],
)
def test_bad_options_are_clear_errors(options, match):
    with pytest.raises(ArchlabError, match=match):
        BankFactory("mos-layer", SPACE.encoding_size, options=options)((4, 4), True, "ffn_in")


def test_missing_or_wrong_encoding_is_a_clear_error():
    bank = _bank(LayerMixtureBank)
    with pytest.raises(ArchlabError, match="set_arch"):
        bank((slice(0, 2), slice(0, 2)))
    with pytest.raises(ArchlabError, match="features"):
        bank.set_arch_encoding(torch.zeros(SPACE.encoding_size + 1))
    with pytest.raises(ArchlabError, match="encoding_size"):
        LayerMixtureBank((4, 4), True, "ffn_in", encoding_size=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("sharing", ["mos-layer", "mos-neuron"])
def test_cuda_forward_backward(sharing):
    torch.manual_seed(0)
    net = TinyElasticMLP(sharing).cuda()
    net.set_arch(SPACE.largest())  # CPU encoding, moved to the device once by the bank
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = net(torch.randn(4, IN, device="cuda"))
    y.float().sum().backward()
    assert net.banks[0].experts.grad.abs().sum() > 0
