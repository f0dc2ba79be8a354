"""Exported NB201 cell subnets hold only the modules of their ops (not every op of every
edge); subnets exported before that (with every op's weights) still load."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save

from archlab.core.errors import ArchlabError
from archlab.supernets.export import load_subnet, save_subnet
from archlab.supernets.families import CellNet
from archlab.supernets.families.cell import PlainCellNet
from archlab.supernets.families.plain import build_plain

pytestmark = pytest.mark.usefixtures("one_thread")

OPTIONS = [{}, {"conv_sharing": "entangled"}, {"partial_channels": 2}]
IDS = ["separate", "entangled", "partial2"]
CONV_OPS = ("nor_conv_1x1", "nor_conv_3x3")


def _arch(*ops: str) -> dict:
    return {"edges": [{"op": op} for op in (ops * 6)[:6]]}


# edge 1<-0 is a 3x3 conv, but node 1 reaches node 3 through no edge (2<-1 and 3<-1 are none)
DEAD_CONV = _arch("nor_conv_3x3", "skip_connect", "none", "skip_connect", "none", "avg_pool_3x3")
ARCHS = {
    "none": _arch("none"),
    "conv3": _arch("nor_conv_3x3"),
    "conv1": _arch("nor_conv_1x1"),
    "skip": _arch("skip_connect"),
    "pool": _arch("avg_pool_3x3"),
    "mixed": _arch("nor_conv_3x3", "nor_conv_1x1", "none", "avg_pool_3x3", "skip_connect", "nor_conv_1x1"),
    "dead_conv": DEAD_CONV,
}


def _conv_bn(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + 2 * cout  # bias-free conv, BN weight and bias


def _expected_params(dims: dict, arch: dict) -> int:
    """Parameters of the kept modules, from their shapes: stem, reductions, head, and per
    edge the conv its op runs (an entangled 1x1 too: the shared 3x3's centre; dead edges
    count too)."""
    c, cin = dims["channels"], dims["in_channels"]
    total = _conv_bn(cin, c, 3)  # stem + stem BN
    for s in range(dims["stages"]):
        if s > 0:  # reduction: a (3x3 stride 2) + BN, b (ReLU-conv3x3-BN), 1x1 shortcut
            total += _conv_bn(c, 2 * c, 3) + _conv_bn(2 * c, 2 * c, 3) + c * 2 * c
            c *= 2
        cp = c // dims["partial_channels"]
        for _ in range(dims["cells_per_stage"]):
            for e in arch["edges"]:
                if e["op"] == "nor_conv_3x3":
                    total += _conv_bn(cp, cp, 3)
                elif e["op"] == "nor_conv_1x1":
                    total += _conv_bn(cp, cp, 1)
    return total + 2 * c + c * dims["num_classes"] + dims["num_classes"]  # last BN, classifier


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _legacy_state(net: CellNet) -> dict[str, torch.Tensor]:
    """The state dict a subnet exported before pruning had: every op's weights of the body."""
    return {f"body.{k}": v.detach().clone() for k, v in net.body.state_dict().items()}


def _source_value(source: dict[str, torch.Tensor], key: str, dims: dict) -> torch.Tensor:
    """The supernet's value of a plain subnet's key: an entangled 1x1 edge's ``conv1`` is its
    shared ``conv3`` (the weight's centre)."""
    if dims["conv_sharing"] != "entangled" or ".conv1." not in key:
        return source[key]
    value = source[key.replace(".conv1.", ".conv3.")]
    return value[..., 1:2, 1:2] if value.dim() == 4 else value


def _trained(options: dict) -> tuple[CellNet, torch.Tensor]:
    torch.manual_seed(0)
    net = CellNet(**options).train()
    x = net.example_input(4)
    for seed in range(3):  # training-mode forwards move BatchNorm statistics of several archs
        net.set_arch(net.space.sample(seed))
        net(x)
    return net.eval(), x


@pytest.mark.parametrize("options", OPTIONS, ids=IDS)
@pytest.mark.parametrize("name", list(ARCHS))
def test_parameter_count_is_that_of_the_kept_modules(options, name):
    net = CellNet(**options)
    arch = ARCHS[name]
    plain = net.extract(arch)
    assert _n_params(plain) == _expected_params(net.dims, arch)
    assert _n_params(build_plain("cell", net.dims, arch)) == _expected_params(net.dims, arch)
    for cell in plain.body.cells():
        for edge, e in zip(cell.edges, arch["edges"]):
            keeps3, keeps1 = e["op"] == "nor_conv_3x3", e["op"] == "nor_conv_1x1"
            assert (edge.conv3 is not None) == keeps3 and (edge.conv1 is not None) == keeps1
            keys = {k.split(".")[0] for k in edge.state_dict()}
            assert keys == {name for name, kept in (("conv3", keeps3), ("conv1", keeps1)) if kept}


def test_parameter_count_differs_by_architecture():
    net = CellNet()
    counts = {name: _n_params(net.extract(arch)) for name, arch in ARCHS.items()}
    assert counts["none"] == counts["skip"] == counts["pool"] < counts["conv1"] < counts["conv3"]
    assert counts["none"] < counts["dead_conv"]  # a dead edge keeps its op's weights
    ent = CellNet(conv_sharing="entangled")  # a 1x1 edge keeps the shared 3x3's centre only
    assert _n_params(ent.extract(ARCHS["conv1"])) == counts["conv1"]
    assert _n_params(ent.extract(ARCHS["conv3"])) == counts["conv3"]
    pc = CellNet(partial_channels=2)
    assert _n_params(pc.extract(ARCHS["conv3"])) < counts["conv3"]
    assert _n_params(pc.extract(ARCHS["none"])) == counts["none"]


@pytest.mark.parametrize("options", OPTIONS, ids=IDS)
def test_extracted_pruned_subnet_equals_the_supernet(options):
    net, x = _trained(options)
    archs = [net.space.sample(seed) for seed in range(10, 16)] + [net.space.validate(a) for a in ARCHS.values()]
    source = net.body.state_dict()
    for arch in archs:
        net.set_arch(arch)
        with torch.no_grad():
            expected = net(x)
        plain = net.extract(arch).eval()
        for k, v in plain.body.state_dict().items():  # every kept weight comes from the supernet
            assert torch.equal(v, _source_value(source, k, net.dims)), k
        with torch.no_grad():
            assert torch.equal(plain(x), expected)
    net.train()
    arch = net.space.sample(20)
    net.set_arch(arch)
    expected = net(x)
    plain = net.extract(arch).train()  # training mode: batch statistics
    assert torch.equal(plain(x), expected)


@pytest.mark.parametrize("options", OPTIONS, ids=IDS)
def test_a_state_dict_with_the_old_extra_keys_loads(options, tmp_path):
    net, x = _trained(options)
    entangled = options.get("conv_sharing") == "entangled"
    for i, arch in enumerate((ARCHS["none"], ARCHS["conv1"], ARCHS["mixed"], DEAD_CONV)):
        sub = net.extract(arch).eval()
        legacy = _legacy_state(net)
        keys = {k.replace(".conv1.", ".conv3.") if entangled else k for k in sub.state_dict()}
        assert keys <= set(legacy)  # the old export held every module the subnet keeps
        plain = PlainCellNet(net.dims, arch).eval()
        plain.load_state_dict(legacy, strict=True)
        with torch.no_grad():
            assert torch.equal(plain(x), sub(x))
        # through load_subnet: an export whose weights file has the old keys
        out = save_subnet(sub, tmp_path / f"old{i}")
        (out / "model.safetensors").write_bytes(save(legacy, metadata={"format": "pt", "family": "cell"}))
        back = load_subnet(out)
        assert set(back.state_dict()) == set(sub.state_dict())
        with torch.no_grad():
            assert torch.equal(back(x), sub(x))


def test_an_entangled_1x1_exported_with_the_whole_3x3_loads_as_its_centre(tmp_path):
    """Exports made while an entangled 1x1 edge kept the shared 3x3 (edges pruned, the 3x3
    whole) load into the 1x1 subnet, the same function with a ninth of the edge's weights."""
    net, x = _trained({"conv_sharing": "entangled"})
    arch = ARCHS["mixed"]
    sub = net.extract(arch).eval()
    source = net.body.state_dict()
    whole = {f"body.{k.replace('.conv1.', '.conv3.')}": source[k.replace(".conv1.", ".conv3.")]
             for k in sub.body.state_dict()}
    conv3 = "body.blocks.0.edges.1.conv3.conv.bank.weight"  # edge 1 is a 1x1
    assert whole[conv3].shape[-2:] == (3, 3)
    assert sub.state_dict()[conv3.replace("conv3", "conv1")].shape[-2:] == (1, 1)
    out = save_subnet(sub, tmp_path / "whole3x3")
    (out / "model.safetensors").write_bytes(save(whole, metadata={"format": "pt", "family": "cell"}))
    back = load_subnet(out)
    assert set(back.state_dict()) == set(sub.state_dict())
    assert torch.equal(back.state_dict()[conv3.replace("conv3", "conv1")], whole[conv3][..., 1:2, 1:2])
    with torch.no_grad():
        assert torch.equal(back(x), sub(x))
    separate = CellNet().extract(arch)
    assert _n_params(back) == _n_params(separate) < _n_params(PlainCellNet(net.dims, ARCHS["conv3"]))


@pytest.mark.parametrize("options", OPTIONS, ids=IDS)
def test_unexpected_keys_not_of_a_pruned_module_and_missing_keys_still_fail(options, tmp_path):
    net, _ = _trained(options)
    arch = ARCHS["mixed"]  # edge 0: conv3, 1: conv1, 2: none, 3: pool, 4: skip, 5: conv1
    sub = net.extract(arch)
    entangled = options.get("conv_sharing") == "entangled"
    pruned_conv3 = "body.blocks.0.edges.2.conv3"  # a none edge: its conv3 was pruned
    w = torch.zeros(1)
    bad = {
        "stray key under a pruned module": {f"{pruned_conv3}.conv.bank.extra": w},
        "stray key under a kept module": {"body.blocks.0.edges.0.conv3.conv.bank.extra": w},
        "module no edge ever had": {"body.blocks.0.edges.2.conv5.conv.bank.weight": w},
        "key at the top": {"extra": w},
    }
    if entangled:  # entangled edges never had a conv1: its keys are not of a pruned module
        bad["conv1 of an entangled edge"] = {"body.blocks.0.edges.2.conv1.conv.bank.weight": w}
    for why, extra in bad.items():
        state = {**_legacy_state(net), **extra}
        with pytest.raises(RuntimeError, match="Unexpected key"):
            build_plain("cell", net.dims, arch).load_state_dict(state, strict=True)
        out = save_subnet(sub, tmp_path / why.replace(" ", "_"))
        (out / "model.safetensors").write_bytes(save(state))
        with pytest.raises(ArchlabError, match=r"weights do not match config\.json"):
            load_subnet(out)
    kept = "body.blocks.0.edges.0.conv3.conv.bank.weight"
    for state in (_legacy_state(net), dict(sub.state_dict())):
        del state[kept]  # a kept module's weight is missing
        with pytest.raises(RuntimeError, match="Missing key"):
            build_plain("cell", net.dims, arch).load_state_dict(state, strict=True)


@pytest.mark.parametrize("options", OPTIONS, ids=IDS)
def test_save_and_load_round_trip_of_a_pruned_subnet(options, tmp_path):
    from safetensors.torch import load_file

    net, x = _trained(options)
    for i, arch in enumerate([net.space.sample(30), ARCHS["none"], ARCHS["conv1"], DEAD_CONV]):
        sub = net.extract(arch).eval()
        out = save_subnet(sub, tmp_path / str(i), meta={"i": i}, formats=("safetensors", "pt"))
        assert set(load_file(str(out / "model.safetensors"))) == set(sub.state_dict())
        back = load_subnet(out)
        assert back.meta == {"i": i} and not back.training
        assert _n_params(back) == _n_params(sub) == _expected_params(net.dims, sub.arch)
        with torch.no_grad():
            assert torch.equal(back(x), sub(x))
        (out / "model.safetensors").unlink()  # the weights-only .pt file loads the same
        with torch.no_grad():
            assert torch.equal(load_subnet(out)(x), sub(x))


def test_a_pruned_edge_refuses_an_op_it_has_no_weights_for():
    plain = PlainCellNet(CellNet().dims, ARCHS["none"])
    plain.body.set_ops(["nor_conv_3x3"] * 6)
    with pytest.raises(ArchlabError, match="needs conv3, which this pruned plain edge does not hold"):
        plain(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ArchlabError, match="cell edge op: 'conv7'"):
        PlainCellNet(CellNet().dims, _arch("conv7"))
