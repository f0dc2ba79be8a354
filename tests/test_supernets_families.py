"""Model families: extraction equality, arch validation, space checks, config, devices."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from archlab.core.errors import ArchlabError
from archlab.spaces import Choice, IntRange, PerLayer, SearchSpace
from archlab.spaces.errors import SpaceError
from archlab.spaces.library import mlp_space, mobilenet_v3_space, transformer_lm_space
from archlab.supernets import (
    FAMILIES,
    ConvNet,
    MLPNet,
    Supernet,
    TransformerLM,
    make_supernet,
    pick_device,
)
from archlab.supernets.base import extreme_arch
from archlab.supernets.layers.banks import BANKS, EntangledBank, register_bank

ORDINARY = (nn.Linear, nn.Conv2d, nn.LayerNorm, nn.Embedding, nn.BatchNorm2d)


def small_lm(**kw):
    return TransformerLM(transformer_lm_space(n_layer=(0, 3)), vocab_size=23, context=12, **kw)


def small_cnn(**kw):
    space = mobilenet_v3_space("cnn", n_stages=3, depth=(1, 2), kernel=(3, 5), expand=(2, 3), width_mult=(0.5, 1.0))
    return ConvNet(space, num_classes=5, in_channels=2, image_size=8, **kw)


def small_mlp(**kw):
    return MLPNet(mlp_space(n_layer=(1, 3), width=(8, 16, 24), activation=("relu", "gelu")), in_features=10,
                  num_classes=4, **kw)


BUILDERS = {"transformer_lm": small_lm, "convnet": small_cnn, "mlp": small_mlp}


def _input(net: Supernet, n: int = 3) -> torch.Tensor:
    return net.example_input(n, 12) if isinstance(net, TransformerLM) else net.example_input(n)


def _perturb_bn(net: Supernet) -> None:
    """Give BatchNorm non-trivial statistics and the norms non-trivial affine weights."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.dim() == 1 and "weight" in name:
                p.uniform_(0.5, 1.5)
            elif p.dim() == 1:
                p.uniform_(-0.3, 0.3)
        for name, b in net.named_buffers():
            if name.endswith("running_mean"):
                b.uniform_(-0.5, 0.5)
            elif name.endswith("running_var"):
                b.uniform_(0.5, 2.0)


@pytest.mark.parametrize("family", sorted(BUILDERS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_extracted_module_equals_supernet(family, seed):
    torch.manual_seed(seed)
    net = BUILDERS[family]()
    _perturb_bn(net)
    net.eval()
    x = _input(net)
    archs = net.space.sample_many(4, seed=seed)
    if seed == 0:
        archs += [extreme_arch(net.space, "low"), extreme_arch(net.space)]
    for arch in archs:
        net.set_arch(arch)
        y = net(x)
        sub = net.extract(arch).eval()
        y_sub = sub(x)
        assert y_sub.shape == y.shape
        assert (y - y_sub).abs().max().item() <= 1e-5
        # no slicing left: ordinary layers only, and fewer parameters than the supernet
        assert not any(type(m).__name__.startswith("Elastic") for m in sub.modules())
        assert any(isinstance(m, ORDINARY) for m in sub.modules())
        n_sub, n_net = sum(p.numel() for p in sub.parameters()), sum(p.numel() for p in net.parameters())
        assert n_sub == n_net if arch == extreme_arch(net.space) else n_sub < n_net


def test_extract_restores_the_active_arch_and_counts_params():
    net = small_lm()
    a, b = net.space.sample_many(2, seed=3)
    net.set_arch(a)
    sub = net.extract(b)
    assert net.arch == a
    d = b["d_model"]
    expected = 23 * d + 12 * d + 2 * d  # embeddings + final LN (tied head)
    for layer in b["layers"]:
        inner = layer["n_head"] * net.head_dim
        expected += 2 * 2 * d + (d * 3 * inner + 3 * inner) + (inner * d + d) + (d * layer["ffn"] + layer["ffn"])
        expected += layer["ffn"] * d + d
    assert sum(p.numel() for p in sub.parameters()) == expected


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_output_shapes_for_min_and_max(family):
    net = BUILDERS[family]()
    x = _input(net, 2)
    for arch in (extreme_arch(net.space, "low"), extreme_arch(net.space)):
        net.set_arch(arch)
        out = net(x)
        if family == "transformer_lm":
            assert out.shape == (2, 12, 23)
        else:
            assert out.shape == (2, net.dims["num_classes"])
        assert torch.isfinite(out).all()


def test_transformer_is_causal_and_checks_context():
    net = small_lm().eval()
    x = net.example_input(1, 12)
    x2 = x.clone()
    x2[0, 6:] = (x2[0, 6:] + 1) % 23
    torch.testing.assert_close(net(x)[:, :6], net(x2)[:, :6])
    with pytest.raises(ArchlabError, match="context"):
        net(torch.zeros(1, 13, dtype=torch.long))


def test_untied_head_extracts():
    net = small_lm(tie_weights=False).eval()
    arch = net.space.sample(4)
    x = net.example_input(2, 12)
    net.set_arch(arch)
    assert (net(x) - net.extract(arch).eval()(x)).abs().max() <= 1e-5


def test_set_arch_with_foreign_arch_raises_space_error():
    lm, cnn = small_lm(), small_cnn()
    with pytest.raises(SpaceError):
        lm.set_arch(cnn.space.sample(0))
    with pytest.raises(SpaceError, match="d_model"):
        lm.set_arch({"n_layer": 1, "d_model": 65, "layers": [{"n_head": 2, "ffn": 128}]})
    with pytest.raises(SpaceError):
        cnn.set_arch(lm.space.sample(0))
    # JSON text works too
    arch = lm.space.sample(1)
    assert lm.set_arch(arch.key) == arch and lm.arch == arch


@pytest.mark.parametrize(
    ("cls", "space", "missing"),
    [
        (TransformerLM, SearchSpace("t", n_layer=IntRange(1, 2), layers=PerLayer("n_layer", n_head=Choice(2), ffn=Choice(8))), "d_model"),
        (TransformerLM, SearchSpace("t", n_layer=IntRange(1, 2), d_model=Choice(8), layers=PerLayer("n_layer", n_head=Choice(2))), "layers[i].ffn"),
        (ConvNet, SearchSpace("c", stages=PerLayer(2, depth=Choice(1, 2), blocks=PerLayer("depth", kernel=Choice(3)))), "stages[i].blocks[i].expand"),
        (MLPNet, SearchSpace("m", depth=IntRange(1, 2), layers=PerLayer("depth", width=Choice(8))), "n_layer"),
    ],
)
def test_missing_space_parameter_is_named(cls, space, missing):
    with pytest.raises(ArchlabError) as info:
        cls(space)
    msg = str(info.value)
    assert repr(missing) in msg and "expects" in msg


def test_sharing_attribute_and_mixture_banks_extract():
    assert small_lm().sharing == "entangled"
    torch.manual_seed(0)
    net = small_mlp(sharing="mos-layer", sharing_options={"experts": 3})
    assert net.sharing == "mos-layer"
    assert any(type(m).__name__ != "EntangledBank" and hasattr(m, "role") for m in net.modules())
    net.eval()
    x = net.example_input(4)
    outs = []
    for arch in net.space.sample_many(3, seed=5):
        net.set_arch(arch)
        y = net(x)
        outs.append(y)
        assert (y - net.extract(arch).eval()(x)).abs().max().item() <= 1e-5


def test_set_arch_passes_normalised_encoding_to_banks():
    seen = []

    @register_bank("test-recording")
    class RecordingBank(EntangledBank):
        def __init__(self, weight_shape, bias, role, encoding_size=0, **kw):
            super().__init__(weight_shape, bias, role, **kw)
            self.encoding_size = encoding_size

        def set_arch_encoding(self, encoding):
            seen.append(encoding)

    try:
        net = small_mlp(sharing="test-recording", roles="all")
        seen.clear()
        arch = net.space.sample(7)
        net.set_arch(arch)
        n_banks = sum(isinstance(m, RecordingBank) for m in net.modules())
        assert n_banks == len(seen) > 0
        expected = torch.as_tensor(net.space.encode(arch, normalized=True))
        assert all(torch.equal(e, expected) for e in seen)
        assert seen[0].device == next(net.parameters()).device
    finally:
        BANKS.pop("test-recording", None)


def test_config_round_trip_and_registry():
    net = small_cnn()
    cfg = json.loads(json.dumps(net.config()))
    assert cfg["family"] == "convnet" and cfg["sharing"] == "entangled"
    back = Supernet.from_config(cfg)
    assert isinstance(back, ConvNet) and back.space == net.space and back.dims == net.dims
    assert ConvNet.from_config(json.dumps(cfg)).dims == net.dims
    with pytest.raises(ArchlabError, match="family"):
        TransformerLM.from_config(cfg)
    assert set(FAMILIES) == {"transformer_lm", "convnet", "mlp", "cell"}
    assert FAMILIES["mlp"] is MLPNet
    assert isinstance(make_supernet("mlp", None, in_features=5), MLPNet)
    with pytest.raises(ArchlabError, match="allowed"):
        make_supernet("resnet", None)


def test_default_spaces_build():
    for cls in (TransformerLM, ConvNet, MLPNet):
        space = cls.default_space()
        assert space.size > 1
    net = ConvNet(image_size=28)
    assert net(net.example_input(2)).shape == (2, 10)
    assert net.dims["stem_stride"] == 2


def test_device_selection_cpu():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ArchlabError, match="device"):
        pick_device("nonsense")
    if not torch.cuda.is_available():
        with pytest.raises(ArchlabError, match="CUDA"):
            pick_device("cuda")
    net = small_mlp().to(pick_device("cpu"))
    assert net.example_input(2).device.type == "cpu"
    net.set_arch(net.space.sample(2))
    assert next(net.extract().parameters()).device.type == "cpu"


def test_recalibrate_batchnorm_on_convnet_matches_batch_statistics():
    from archlab.supernets import recalibrate_batchnorm

    torch.manual_seed(0)
    net = small_cnn()
    arch = net.space.sample(11)
    x = torch.randn(16, 2, 8, 8) * 2 + 0.5
    with torch.no_grad():
        net.stem_bn.running_mean.fill_(3.0)
    net.eval()
    recalibrate_batchnorm(net, [x], arch=arch)
    assert net.arch == arch and not net.training
    c = net.stem_bn.channels
    with torch.no_grad():
        stem_out = net.stem(x)
    torch.testing.assert_close(net.stem_bn.running_mean[:c], stem_out.mean((0, 2, 3)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(net.stem_bn.running_var[:c], stem_out.transpose(0, 1).flatten(1).var(1), atol=1e-4, rtol=1e-4)
    if c < net.stem_bn.channels_max:
        assert torch.all(net.stem_bn.running_mean[c:] == 3.0)
    # the extracted module carries the recalibrated statistics
    sub = net.extract(arch).eval()
    assert (net(x) - sub(x)).abs().max().item() <= 1e-5
