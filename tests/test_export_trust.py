"""``archlab export``: the experiment comes from the command line and is checked against the
study (space fingerprint, file hash); a study never decides which code runs. The exported
subnet records the task's input preprocessing and ``load_subnet`` applies it to raw inputs."""

from __future__ import annotations

import json
import textwrap

import optuna
import pytest
import torch

from archlab.cli import main
from archlab.search import load_trials

EXP = """
from archlab import Experiment
from archlab.spaces.library import mlp_space
from archlab.supernets.tasks import DigitsTask
from archlab.supernets.training.config import TrainConfig

exp = Experiment("trust", mlp_space(n_layer=(1, 2), width={widths}), family="mlp", task=DigitsTask(),
                 train=TrainConfig(steps=60, batch_size=64, lr=1e-2, seed=0),
                 search={{"trials": 3, "sampler": "random", "seed": 0,
                         "objectives": {{"accuracy": ("max", "inherited"), "params": ("min", "params")}}}},
                 runs_dir={runs!r})
"""


def _write(path, widths=(16, 32), runs="runs"):
    path.write_text(textwrap.dedent(EXP.format(widths=tuple(widths), runs=str(runs))))
    return path


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A trained mlp experiment and a 3-trial search of it: (folder, experiment file, db)."""
    from archlab.experiment import load_experiment

    root = tmp_path_factory.mktemp("trust")
    exp_file = _write(root / "exp.py", runs=root / "runs")
    load_experiment(str(exp_file)).train_supernet()
    assert main(["search", str(exp_file)]) == 0
    return root, exp_file, root / "runs" / "trust" / "study.db"


def _tamper(db, **attrs):
    """Rewrite the study's recorded attributes, as someone handing over a database could."""
    st = optuna.storages.RDBStorage(f"sqlite:///{db}")
    study = optuna.load_study(study_name="trust", storage=st)
    info = dict(study.user_attrs["archlab"])
    old = dict(info)
    info.update(attrs)
    study.set_user_attr("archlab", info)
    st.engine.dispose()
    return old


def test_search_records_space_fingerprint_and_file_hash(searched):
    import hashlib

    from archlab.experiment import load_experiment

    _, exp_file, db = searched
    info = load_trials(db, "trust").attrs["archlab"]
    assert info["space_fingerprint"] == load_experiment(str(exp_file)).space.fingerprint
    assert info["experiment_sha256"] == hashlib.sha256(exp_file.read_bytes()).hexdigest()


def test_export_never_imports_the_file_the_study_names(searched, run_cli, tmp_path):
    _root, exp_file, db = searched
    marker = tmp_path / "ran.txt"
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').write('imported')\n")
    old = _tamper(db, experiment_file=str(evil))
    try:
        # without --experiment: a usage error, nothing imported
        with pytest.raises(SystemExit) as exc:
            main(["export", str(db), "trust", "0", str(tmp_path / "a")])
        assert exc.value.code == 2 and not marker.exists()
        # with the user's experiment: the recorded path is ignored
        code, _out, err = run_cli("export", str(db), "trust", "0", str(tmp_path / "b"), "--experiment", str(exp_file))
        assert code == 0, err
        assert not marker.exists() and (tmp_path / "b" / "model.safetensors").is_file()
        # even given explicitly, a file whose hash is not the recorded one is refused before it is imported
        code, _, err = run_cli("export", str(db), "trust", "0", str(tmp_path / "c"), "--experiment", str(evil))
        assert code == 2 and "is not the experiment file study 'trust' was searched with" in err
        assert len(err.strip().splitlines()) == 1 and not marker.exists()
    finally:
        _tamper(db, **old)


def test_export_refuses_an_edited_file_unless_allowed(searched, run_cli, tmp_path):
    _root, exp_file, db = searched
    edited = tmp_path / "edited.py"
    edited.write_text(exp_file.read_text() + "\n# tuned the search settings\n")
    code, _, err = run_cli("export", str(db), "trust", "1", str(tmp_path / "x"), "--experiment", str(edited))
    assert code == 2 and err.startswith("archlab: error: ") and "--allow-mismatch" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
    code, _out, err = run_cli("export", str(db), "trust", "1", str(tmp_path / "x"), "--experiment", str(edited),
                             "--allow-mismatch")
    assert code == 0 and "differs from the file the search used" in err
    assert json.loads((tmp_path / "x" / "config.json").read_text())["meta"]["trial"] == 1


def test_export_refuses_another_space_even_when_allowed(searched, run_cli, tmp_path):
    root, _, db = searched
    other = _write(tmp_path / "other.py", widths=(16, 48), runs=root / "runs")
    for extra, message in (([], "is not the experiment file"), (["--allow-mismatch"], "was searched over fingerprint")):
        code, _, err = run_cli("export", str(db), "trust", "0", str(tmp_path / "y"), "--experiment", str(other), *extra)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "y").exists()


def test_exported_digits_subnet_takes_raw_inputs(searched, run_cli, tmp_path):
    """Raw sklearn digits through ``load_subnet`` score exactly what the search recorded."""
    from sklearn.datasets import load_digits

    from archlab import load_subnet
    from archlab.supernets.tasks import DigitsTask
    from archlab.supernets.tasks.base import stratified_split

    _, exp_file, db = searched
    df = load_trials(db, "trust")
    number = int(df.loc[df["state"] == "COMPLETE", "number"].iloc[-1])
    recorded = float(df.loc[df["number"] == number, "accuracy"].iloc[0])
    assert run_cli("export", str(db), "trust", str(number), str(tmp_path / "sub"), "--experiment", str(exp_file))[0] == 0
    config = json.loads((tmp_path / "sub" / "config.json").read_text())
    task = DigitsTask()
    pre = config["preprocessing"]
    assert pre["kind"] == "standardize" and pre["shape"] == [1, 8, 8]
    assert pre["mean"] == pytest.approx(task.mean) and pre["std"] == pytest.approx(task.std)
    assert 4.8 < pre["mean"] < 5.0 and 5.9 < pre["std"] < 6.1  # pixel values 0..16

    d = load_digits()
    _, val = stratified_split(d.target.tolist(), 0.1, 0)
    raw = torch.as_tensor(d.images[val.numpy()], dtype=torch.float32)   # (N, 8, 8), values 0..16
    y = torch.as_tensor(d.target[val.numpy()])
    sub = load_subnet(tmp_path / "sub")
    with torch.no_grad():
        correct = int((sub(raw).argmax(-1) == y).sum())
        bare = int((load_subnet(tmp_path / "sub", preprocess=False)(raw).argmax(-1) == y).sum())
    assert recorded > 0.5  # a trained subnet, so the comparison below means something
    assert correct == round(recorded * len(y))  # exactly the examples the search scored right
    assert bare < correct  # what a user got before: raw inputs, no standardisation
    assert sub.meta["trial"] == number and sub.subnet.family == "mlp"


def test_dashboard_fills_in_only_a_bundled_experiment(tmp_path, monkeypatch):
    """The copy-paste export command names a bundled example when the study used one; any
    other recorded file is never put into the command (only shown as text to compare)."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from archlab.app.demo import make_demo_study

    db = tmp_path / "runs" / "d" / "study.db"
    db.parent.mkdir(parents=True)
    codes = {}
    for name, recorded in (("bundled", "digits_cnn"), ("file", "/tmp/evil.py")):
        make_demo_study(db, name, 12, seed=1)
        st = optuna.storages.RDBStorage(f"sqlite:///{db}")
        study = optuna.load_study(study_name=name, storage=st)
        study.set_user_attr("archlab", {**study.user_attrs["archlab"], "experiment_file": recorded})
        st.engine.dispose()
    monkeypatch.setenv("ARCHLAB_APP_TARGET", str(db))
    main_py = Path(__file__).resolve().parents[1] / "app" / "main.py"
    for name in ("bundled", "file"):
        at = AppTest.from_file(str(main_py), default_timeout=120)
        at.run()
        at.selectbox(key="study").set_value(name).run()
        at.switch_page("views/detail.py").run()
        assert not at.exception, [e.value for e in at.exception]
        codes[name] = (at.code[0].value, [t.value for t in at.text])
    assert codes["bundled"][0].endswith(" --experiment digits_cnn")
    assert codes["file"][0].endswith(" --experiment EXPERIMENT.py") and "evil" not in codes["file"][0]
    assert "/tmp/evil.py" in codes["file"][1]  # shown as plain text, to compare with your own file


@pytest.mark.parametrize(("spec", "message"), [
    ({"kind": "exec", "code": "x"}, "preprocessing.kind: unknown 'exec'"),
    ({"kind": "standardize", "mean": 1.0, "std": 0.0}, "preprocessing.std: must be > 0"),
    ({"kind": "standardize", "mean": "nan", "std": 1.0}, "preprocessing.mean: expected a finite number"),
    ({"kind": "standardize", "mean": 0.0, "std": 1.0, "shape": [1, -8]}, "preprocessing.shape"),
])
def test_a_bad_recorded_preprocessing_is_a_clear_error(tmp_path, spec, message):
    from archlab import ArchlabError, load_subnet
    from archlab.supernets.export import save_subnet
    from archlab.supernets.families.plain import build_plain

    sub = build_plain("mlp", {"in_features": 4, "num_classes": 3, "widths": [5], "activation": "relu"})
    save_subnet(sub, tmp_path, preprocessing={"kind": "standardize", "mean": 0.5, "std": 2.0, "shape": [4]})
    x = torch.randn(2, 4)
    with torch.no_grad():
        assert torch.allclose(load_subnet(tmp_path)(x), sub.eval()((x - 0.5) / 2.0))
        assert torch.equal(load_subnet(tmp_path, preprocess=False)(x), sub(x))
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "preprocessing": spec}))
    with pytest.raises(ArchlabError, match=message):
        load_subnet(tmp_path)
