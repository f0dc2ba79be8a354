"""The NB201 cell family: discrete = one-hot soft = extracted plain net; PC-DARTS partial
channels (K = 1 is the plain mixed op), edge normalisation, entangled 1x1/3x3 convs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from archlab.core.errors import ArchlabError
from archlab.search.oneshot import oneshot_search
from archlab.spaces.library import NB201_OPS
from archlab.supernets.families import FAMILIES, CellNet
from archlab.supernets.families.cell import channel_shuffle
from archlab.supernets.families.plain import build_plain
from archlab.supernets.soft.ops import clear_soft, one_hot_probs, set_soft
from archlab.supernets.tasks import DigitsTask

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("options", [{}, {"conv_sharing": "entangled"}, {"partial_channels": 2}],
                         ids=["separate", "entangled", "partial2"])
def test_one_hot_soft_and_extracted_net_equal_the_discrete_cell(options):
    torch.manual_seed(0)
    net = CellNet(**options).double().train()
    assert FAMILIES["cell"] is CellNet
    x = net.example_input(3).double()
    for seed in range(3):
        arch = net.space.sample(seed)
        net.set_arch(arch)
        expected = net(x)
        set_soft(net, one_hot_probs(net, arch, torch.float64))
        got = net(x)
        clear_soft(net)
        torch.testing.assert_close(got, expected, atol=1e-12, rtol=0)
        plain = net.extract(arch).double().train()
        assert torch.equal(plain(x), expected)


def _mixed(edge, x, probs):
    edge.probs = probs
    try:
        return edge(x)
    finally:
        edge.probs = None


def test_partial_channels_k1_is_the_plain_mixed_op_and_k2_bypasses_and_shuffles():
    torch.manual_seed(0)
    net = CellNet(channels=8).double().train()
    edge = net.body.cells()[0].edges[2]
    x = torch.randn(4, 8, 6, 6, dtype=torch.float64)
    p = F.softmax(torch.randn(5, dtype=torch.float64), 0)
    plain_mix = torch.zeros_like(x)
    for i, name in enumerate(NB201_OPS):  # DARTS' mixed op: every op run, outputs weighted
        edge.op = name
        plain_mix = plain_mix + p[i] * edge(x)
    torch.testing.assert_close(_mixed(edge, x, p), plain_mix, rtol=1e-12, atol=1e-12)

    torch.manual_seed(0)
    pc = CellNet(channels=8, partial_channels=2).double().train()
    e2 = pc.body.cells()[0].edges[2]
    y = _mixed(e2, x, p)
    assert y.shape == x.shape
    torch.testing.assert_close(y[:, 1::2], x[:, 4:], rtol=0, atol=0)  # bypassed half, shuffled in
    assert e2.conv3.conv.in_max == 4  # the ops see C / K channels
    assert channel_shuffle(torch.arange(6.0).view(1, 6, 1, 1), 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    with pytest.raises(ArchlabError, match="partial_channels: 3 does not divide the 8 channels"):
        CellNet(channels=8, partial_channels=3)


def test_entangled_conv_sharing_uses_the_centre_of_the_3x3_as_the_1x1():
    torch.manual_seed(0)
    sep, ent = CellNet(), CellNet(conv_sharing="entangled")
    assert sum(p.numel() for p in ent.parameters()) < sum(p.numel() for p in sep.parameters())
    edge = ent.body.cells()[0].edges[0].double().eval()
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64)
    edge.op = "nor_conv_1x1"
    w = edge.conv3.conv.bank.weight
    expected = edge.conv3.bn(F.conv2d(F.relu(x), w[:, :, 1:2, 1:2]))
    torch.testing.assert_close(edge(x), expected)
    # the mixed pair is one conv: probability 0.3 / 0.7 on 1x1 / 3x3, nothing elsewhere
    p = torch.tensor([0.0, 0.0, 0.3, 0.7, 0.0], dtype=torch.float64)
    mask = torch.full((3, 3), 0.7, dtype=torch.float64)
    mask[1, 1] = 1.0
    mixed = edge.conv3.bn(F.conv2d(F.relu(x), w * mask, padding=1))
    torch.testing.assert_close(_mixed(edge, x, p), mixed)
    with pytest.raises(ArchlabError, match="conv_sharing"):
        CellNet(conv_sharing="shared")


def test_cell_search_on_digits_learns_edge_betas_and_returns_a_trainable_cell():
    task = DigitsTask()
    torch.manual_seed(0)
    net = CellNet(channels=4, partial_channels=2, edge_norm=True)
    before = net.edge_beta.detach().clone()
    res = oneshot_search(net, task, {"method": "darts", "steps": 4, "batch_size": 16, "history_every": 2,
                                     "arch_options": {"arch_lr": 0.05}})
    assert not torch.equal(net.edge_beta.detach(), before)  # the edge betas moved with the architecture
    assert net.space.validate(res.arch.to_dict()) == res.arch
    plain = build_plain("cell", net.dims, res.arch.to_dict())  # standalone, from scratch
    x, y = task.batch("train", 8, torch.Generator().manual_seed(0))
    loss = F.cross_entropy(plain(x), y)
    loss.backward()
    assert torch.isfinite(loss)
