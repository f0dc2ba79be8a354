"""Elastic layers: each equals the ordinary torch layer of its active sub-shape."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archlab.core.errors import ArchlabError
from archlab.supernets import (
    BankFactory,
    ElasticBatchNorm2d,
    ElasticConv2d,
    ElasticDepth,
    ElasticEmbedding,
    ElasticLayerNorm,
    ElasticLinear,
    ElasticSelfAttention,
    recalibrate_batchnorm,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_linear_uses_leading_rows_and_columns_and_matches_plain():
    lin = ElasticLinear(16, 12, bias=True, factory=BankFactory("entangled"), role="linear")
    lin.set_active(10, 7)
    x = torch.randn(3, 10)
    w = lin.bank.weight
    expected = x @ w[:7, :10].T + lin.bank.bias[:7]
    torch.testing.assert_close(lin(x), expected)
    plain = lin.to_plain()
    assert isinstance(plain, nn.Linear) and plain.weight.shape == (7, 10)
    torch.testing.assert_close(plain(x), lin(x), atol=1e-6, rtol=0)
    with pytest.raises(ArchlabError, match="in_features"):
        lin.set_active(17, 5)


def test_linear_gradient_only_reaches_the_active_slice():
    lin = ElasticLinear(8, 8)
    lin.set_active(4, 3)
    lin(torch.randn(5, 4)).sum().backward()
    g = lin.bank.weight.grad
    assert g.shape == (8, 8)
    assert g[:3, :4].abs().sum() > 0
    assert g[3:].abs().sum() == 0 and g[:, 4:].abs().sum() == 0


def test_embedding_and_layernorm_slices():
    emb = ElasticEmbedding(11, 32)
    emb.set_active(20)
    ids = torch.tensor([[1, 5, 10]])
    torch.testing.assert_close(emb(ids), emb.bank.weight[ids][..., :20])
    assert emb.to_plain().weight.shape == (11, 20)
    ln = ElasticLayerNorm(32)
    with torch.no_grad():
        ln.bank.weight.uniform_(0.5, 1.5)
        ln.bank.bias.uniform_(-1, 1)
    ln.set_active(20)
    x = torch.randn(2, 3, 20)
    ref = F.layer_norm(x, (20,), ln.bank.weight[:20], ln.bank.bias[:20])
    torch.testing.assert_close(ln(x), ref)
    torch.testing.assert_close(ln.to_plain()(x), ref)


def test_conv_kernel_is_centre_crop_of_the_largest():
    conv = ElasticConv2d(4, 6, kernel_max=7, factory=BankFactory(), role="conv")
    conv.set_active(3, 5, kernel=3)
    assert conv.padding == 1
    x = torch.randn(2, 3, 9, 9)
    full = conv.bank.weight
    w3 = full[:5, :3, 2:5, 2:5]
    torch.testing.assert_close(conv(x), F.conv2d(x, w3, padding=1))
    conv.set_active(3, 5, kernel=5)
    torch.testing.assert_close(conv(x), F.conv2d(x, full[:5, :3, 1:6, 1:6], padding=2))
    plain = conv.to_plain()
    assert plain.kernel_size == (5, 5) and plain.padding == (2, 2)
    torch.testing.assert_close(plain(x), conv(x), atol=1e-6, rtol=0)
    with pytest.raises(ArchlabError, match="odd"):
        conv.set_active(3, 5, kernel=4)
    with pytest.raises(ArchlabError, match="odd"):
        ElasticConv2d(4, 4, kernel_max=4)


def test_depthwise_and_grouped_conv():
    dw = ElasticConv2d(12, 12, 5, stride=2, group_size=1)
    dw.set_active(8, kernel=3)
    assert dw.out_channels == 8 and dw.groups == 8
    x = torch.randn(2, 8, 7, 7)
    ref = F.conv2d(x, dw.bank.weight[:8, :, 1:4, 1:4], stride=2, padding=1, groups=8)
    torch.testing.assert_close(dw(x), ref)
    torch.testing.assert_close(dw.to_plain()(x), ref, atol=1e-6, rtol=0)
    grouped = ElasticConv2d(16, 16, 3, group_size=4)
    grouped.set_active(8, 12, 3)
    assert grouped.groups == 2
    x = torch.randn(1, 8, 5, 5)
    ref = F.conv2d(x, grouped.bank.weight[:12], padding=1, groups=2)
    torch.testing.assert_close(grouped(x), ref)
    with pytest.raises(ArchlabError, match="multiple"):
        grouped.set_active(6, 12, 3)


def test_batchnorm_uses_and_updates_only_active_stats():
    bn = ElasticBatchNorm2d(8, momentum=0.5)
    bn.set_active(5)
    x = torch.randn(4, 5, 3, 3) * 2 + 3
    bn.train()
    bn(x)
    mean = x.mean((0, 2, 3))
    torch.testing.assert_close(bn.running_mean[:5], 0.5 * mean)
    assert torch.all(bn.running_mean[5:] == 0) and torch.all(bn.running_var[5:] == 1)
    bn.eval()
    ref = F.batch_norm(x, bn.running_mean[:5], bn.running_var[:5], bn.bank.weight[:5], bn.bank.bias[:5], False)
    torch.testing.assert_close(bn(x), ref)
    plain = bn.to_plain().eval()
    torch.testing.assert_close(plain(x), ref)


def test_recalibrate_batchnorm_reestimates_active_stats_from_batches():
    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = ElasticBatchNorm2d(6)
            self.plain_bn = nn.BatchNorm2d(4)

        def forward(self, x):
            return self.plain_bn(self.bn(x)[:, :4])

    net = Tiny()
    net.bn.set_active(5)
    with torch.no_grad():
        net.bn.running_mean.fill_(7.0)
        net.bn.running_var.fill_(9.0)
    batches = [torch.randn(8, 5, 4, 4) * 3 + 1 for _ in range(3)]
    net.eval()
    recalibrate_batchnorm(net, [(b, None) for b in batches])
    assert not net.training and net.bn.momentum == 0.1
    # cumulative average of the batch means; inactive channel 5 keeps its old value
    expected = torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0)
    torch.testing.assert_close(net.bn.running_mean[:5], expected, atol=1e-5, rtol=1e-5)
    expected_var = torch.stack([b.transpose(0, 1).flatten(1).var(1) for b in batches]).mean(0)
    torch.testing.assert_close(net.bn.running_var[:5], expected_var, atol=1e-4, rtol=1e-4)
    assert net.bn.running_mean[5] == 7.0 and net.bn.running_var[5] == 9.0
    assert net.plain_bn.num_batches_tracked == 3
    with pytest.raises(ArchlabError, match="empty"):
        recalibrate_batchnorm(net, [])


def test_attention_fixed_head_dim_rule_and_plain_equivalence():
    attn = ElasticSelfAttention(128, 4)
    assert attn.head_dim == 32
    attn.set_active(96, 2)
    assert attn.qkv.out_features == 3 * 2 * 32 and attn.qkv.in_features == 96
    assert attn.proj.in_features == 64 and attn.proj.out_features == 96
    x = torch.randn(2, 10, 96)
    y = attn(x)
    assert y.shape == (2, 10, 96)
    torch.testing.assert_close(attn.to_plain()(x), y, atol=1e-6, rtol=0)
    # causal: the first position does not see later ones
    x2 = x.clone()
    x2[:, 5:] = torch.randn(2, 5, 96)
    torch.testing.assert_close(attn(x2)[:, :5], y[:, :5])
    # head i keeps its weights: 2 active heads are the first rows of the 4-head layout
    attn.set_active(96, 4)
    assert attn.qkv.index[0] == slice(0, 384)


def test_elastic_depth_runs_first_blocks():
    blocks = ElasticDepth(nn.Linear(4, 4) for _ in range(3))
    x = torch.randn(2, 4)
    blocks.set_depth(2)
    torch.testing.assert_close(blocks(x), blocks[1](blocks[0](x)))
    blocks.set_depth(0)
    torch.testing.assert_close(blocks(x), x)
    with pytest.raises(ArchlabError, match="depth"):
        blocks.set_depth(4)
