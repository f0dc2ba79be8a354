"""Saving, loading and exporting standalone subnets."""

from __future__ import annotations

import json

import pytest
import torch

import archlab
from archlab.core.errors import ArchlabError
from archlab.spaces.library import mobilenet_v3_space
from archlab.supernets import ConvNet, MLPNet, TransformerLM
from archlab.supernets.export import export_onnx, load_subnet, save_subnet


def _nets():
    torch.manual_seed(0)
    return [
        (TransformerLM(vocab_size=17, context=10), lambda n: n.example_input(2, 10)),
        (ConvNet(mobilenet_v3_space("c", n_stages=2, depth=(1, 2), kernel=(3, 5), expand=(2, 3)), image_size=8),
         lambda n: n.example_input(2)),
        (MLPNet(in_features=12), lambda n: n.example_input(2)),
    ]


def test_save_load_round_trip_equal_outputs(tmp_path):
    for i, (net, make_x) in enumerate(_nets()):
        net.train()
        x = make_x(net)
        arch = net.space.sample(i)
        net.set_arch(arch)
        net(x)  # a training-mode forward moves BatchNorm statistics
        sub = net.extract(arch).eval()
        out = save_subnet(sub, tmp_path / net.family, meta={"note": "test", "step": 3})
        cfg = json.loads((out / "config.json").read_text())
        assert cfg["family"] == net.family and cfg["arch"] == arch.to_dict() and "dims" in cfg
        back = archlab.load_subnet(out)
        assert not back.training and back.meta == {"note": "test", "step": 3}
        assert (back(x) - sub(x)).abs().max().item() == 0.0


def test_weights_are_safetensors_and_pt_is_weights_only(tmp_path):
    from safetensors.torch import load_file

    net = MLPNet(in_features=6)
    sub = net.extract(net.space.sample(1))
    out = save_subnet(sub, tmp_path / "s", formats=("safetensors", "pt"))
    tensors = load_file(str(out / "model.safetensors"))
    assert set(tensors) == set(sub.state_dict())
    state = torch.load(out / "weights.pt", weights_only=True)
    for k, v in sub.state_dict().items():
        assert torch.equal(state[k], v)
    # without safetensors the .pt file is read with weights_only=True
    (out / "model.safetensors").unlink()
    x = torch.randn(3, 6)
    assert torch.equal(load_subnet(out)(x), sub.eval()(x))
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "weights.pt"]


def test_bad_subnet_directories_raise_clear_errors(tmp_path):
    net = MLPNet(in_features=6)
    sub = net.extract(net.space.sample(1))
    out = save_subnet(sub, tmp_path / "s")
    weights = out / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchlabError, match="truncated"):
        load_subnet(out)
    weights.unlink()
    with pytest.raises(ArchlabError, match="missing weights"):
        load_subnet(out)
    with pytest.raises(ArchlabError, match=r"config\.json"):
        load_subnet(tmp_path / "nothing")
    (out / "config.json").write_text('{"archlab_subnet": 1, "fam')
    with pytest.raises(ArchlabError, match="JSON"):
        load_subnet(out)
    # weights of another arch
    other = save_subnet(net.extract(net.space.largest()), tmp_path / "big")
    small = save_subnet(net.extract(net.space.smallest()), tmp_path / "small")
    (small / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(ArchlabError, match="do not match"):
        load_subnet(small)
    with pytest.raises(ArchlabError, match="PlainSubnet"):
        save_subnet(net, tmp_path / "x")


@pytest.mark.slow
def test_onnx_export_matches_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    net = TransformerLM(vocab_size=17, context=10)
    arch = net.space.sample(3)
    sub = net.extract(arch).eval()
    x = net.example_input(2, 10)
    path = export_onnx(sub, x, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path))
    xb = torch.cat([x, x.flip(0), x])  # dynamic batch axis
    got = session.run(None, {"input": xb.numpy()})[0]
    with torch.no_grad():
        ref = sub(xb).numpy()
    assert abs(got - ref).max() <= 1e-4
