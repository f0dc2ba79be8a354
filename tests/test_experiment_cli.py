"""Experiments, bundled examples and the train / extract command line."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from archlab import Experiment, load_experiment
from archlab.core.errors import ArchlabError

EXPERIMENT = textwrap.dedent(
    """
    from archlab import Experiment
    from archlab.spaces.library import mlp_space
    from archlab.supernets.tasks import DigitsTask
    from archlab.supernets.training.config import TrainConfig

    tiny = Experiment(
        name="tiny", space=mlp_space("{space}", n_layer=(1, 2), width=(16, 32)), family="mlp",
        task=DigitsTask(), runs_dir={runs!r},
        train=TrainConfig(steps=6, batch_size=32, lr=1e-2, checkpoint_every=3, num_threads=1, device="cpu"),
    )
    """
)


def write_experiment(tmp_path: Path, space: str = "tiny_space", name: str = "exp.py") -> Path:
    path = tmp_path / name
    path.write_text(EXPERIMENT.format(space=space, runs=str(tmp_path / "runs")))
    return path


def test_bundled_examples_load_and_build():
    digits = load_experiment("digits_cnn")
    assert isinstance(digits, Experiment) and digits.family == "convnet"
    assert digits.run_dir == Path("runs") / "digits_cnn"
    net = digits.build_supernet()
    assert net.dims["image_size"] == 8 and net.sharing == "entangled"
    lm = load_experiment("char_transformer")
    net = lm.build_supernet(sharing="mos-layer")
    assert net.sharing == "mos-layer" and net.config()["dims"]["vocab_size"] == 97
    assert lm.supernet_dir("mos-layer") == lm.run_dir / "supernet-mos-layer"
    with pytest.raises(ArchlabError, match="not a Python file or a bundled example"):
        load_experiment("no_such_example")


def test_build_supernet_passes_only_what_the_family_accepts(tmp_path):
    exp = load_experiment(f"{write_experiment(tmp_path)}:tiny")
    assert exp.supernet_kwargs() == {"num_classes": 10, "in_features": 64}
    with pytest.raises(ArchlabError, match="family: unknown 'cnn'"):
        Experiment("x", exp.space, "cnn", exp.task)
    with pytest.raises(ArchlabError, match=r"TrainConfig\.steps"):
        Experiment("x", exp.space, "mlp", exp.task, train={"steps": -1})


def test_train_resume_and_extract_on_the_command_line(tmp_path, run_cli):
    exp_file = write_experiment(tmp_path)
    code, out, err = run_cli("train", str(exp_file))
    assert code == 0, err
    assert "to step 6" in out and "largest val_accuracy=" in out
    code, out, _ = run_cli("train", str(exp_file), "--steps", "9")
    assert code == 0 and "resumed from step 6" in out
    exp = load_experiment(str(exp_file))
    net = exp.load_supernet()
    arch = exp.space.sample(3)
    (tmp_path / "arch.json").write_text(arch.to_json())
    code, out, err = run_cli("extract", str(exp_file), str(tmp_path / "arch.json"), str(tmp_path / "sub"), "--no-onnx")
    assert code == 0, err
    from archlab.supernets.export import load_subnet

    sub = load_subnet(tmp_path / "sub", preprocess=False)  # x below is the task's standardised input
    net.set_arch(arch)
    net.eval()
    x = exp.task.eval_batches("val", 1)[0][0].flatten(1)
    assert torch.allclose(sub(x), net(x), atol=1e-5)
    meta = json.loads((tmp_path / "sub" / "config.json").read_text())["meta"]
    assert meta["experiment"] == "tiny" and 0.0 <= meta["metrics"]["accuracy"] <= 1.0
    assert torch.load(tmp_path / "sub" / "weights.pt", weights_only=True).keys() == sub.state_dict().keys()
    # the task's standardisation is recorded, and the default load applies it to raw pixels
    pre = json.loads((tmp_path / "sub" / "config.json").read_text())["preprocessing"]
    assert pre == exp.task.preprocessing()
    raw = x * exp.task.std + exp.task.mean
    assert torch.allclose(load_subnet(tmp_path / "sub")(raw), net(x), atol=1e-4)


def test_bad_input_prints_one_line_and_exits_2(tmp_path, run_cli):
    exp_file = write_experiment(tmp_path)
    assert run_cli("train", str(exp_file))[0] == 0
    # an architecture of another space
    (tmp_path / "arch.json").write_text(json.dumps({"n_layer": 5, "layers": [{"width": 16}] * 5}))
    code, _, err = run_cli("extract", str(exp_file), str(tmp_path / "arch.json"), str(tmp_path / "o"))
    assert code == 2 and err.count("\n") == 1 and "n_layer" in err
    # a checkpoint of another space (same experiment name and run directory)
    other = write_experiment(tmp_path, space="other_space", name="other.py")
    code, _, err = run_cli("train", str(other), "--steps", "8")
    assert code == 2 and "another search space" in err and err.count("\n") == 1
    # a truncated checkpoint
    ckpt = tmp_path / "runs" / "tiny" / "supernet" / "ckpt.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    code, _, err = run_cli("train", str(exp_file), "--steps", "8")
    assert code == 2 and "truncated or corrupt" in err
    # text too short for the context; a missing data directory
    short = tmp_path / "short.txt"
    short.write_text("abc" * 20)
    lm = tmp_path / "lm.py"
    lm.write_text(
        "from archlab import Experiment\nfrom archlab.supernets import TransformerLM\n"
        "from archlab.supernets.tasks import CharLMTask\n"
        f"e = Experiment('lm', TransformerLM.default_space(), 'transformer_lm', CharLMTask({str(short)!r}))\n"
    )
    code, _, err = run_cli("train", str(lm))
    assert code == 2 and "text too short for context=128" in err and "short.txt" in err
    mn = tmp_path / "mn.py"
    mn.write_text(
        "from archlab import Experiment\nfrom archlab.supernets import ConvNet\n"
        "from archlab.supernets.tasks import MNISTTask\n"
        f"e = Experiment('mn', ConvNet.default_space(), 'convnet', MNISTTask({str(tmp_path / 'nodata')!r}))\n"
    )
    code, _, err = run_cli("train", str(mn))
    assert code == 2 and "nodata: no such MNIST directory" in err
    # extracting before training
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (tmp_path / "ok.json").write_text(json.dumps({"n_layer": 1, "layers": [{"width": 16}]}))
    code, _, err = run_cli("extract", str(write_experiment(fresh)), str(tmp_path / "ok.json"), str(tmp_path / "o"))
    assert code == 2 and "no trained supernet here" in err
