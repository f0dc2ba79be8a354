"""``archlab predictor fit|score|show`` and ``archlab profile``: outputs and exit codes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from archlab.predictors import LatencyPredictor
from archlab.spaces.library import transformer_lm_space


@pytest.fixture
def arch_csv(tmp_path):
    space = transformer_lm_space()
    archs = space.sample_many(120, seed=0)
    y = [0.1 + a["n_layer"] * a["d_model"] / 100 + sum(layer["ffn"] for layer in a["layers"]) / 1000 for a in archs]
    path = tmp_path / "phone.csv"
    pd.DataFrame({"arch": [a.key for a in archs], "latency_ms": y}).to_csv(path, index=False)
    space_py = tmp_path / "space.py"
    space_py.write_text("from archlab.spaces.library import transformer_lm_space\nspace = transformer_lm_space()\n")
    return path, space_py


def test_fit_score_show(run_cli, arch_csv, tmp_path):
    data, space_py = arch_csv
    out = tmp_path / "pred" / "latency.json"
    code, stdout, err = run_cli("predictor", "fit", str(data), "--space", str(space_py), "--model", "ridge",
                                "--out", str(out))
    assert code == 0, err
    assert "fitted latency predictor (ridge) on 96 rows" in stdout and "MAPE" in stdout
    doc = json.loads(out.read_text())
    assert len(doc["holdout"]["y_true"]) == 24
    code, stdout, _ = run_cli("predictor", "score", str(out), str(data), "--json")
    assert code == 0
    s = json.loads(stdout)
    assert s["mape"] < 5 and s["kendall_tau"] > 0.9
    code, stdout, _ = run_cli("predictor", "show", str(out))
    assert code == 0 and "transformer_lm" in stdout and "model ridge" in stdout
    assert LatencyPredictor.load(out).n_train == 96


def test_flat_param_columns_and_bad_rows(run_cli, arch_csv, tmp_path):
    data, space_py = arch_csv
    space = transformer_lm_space()
    frame = pd.read_csv(data)
    flat = pd.DataFrame([space.to_params(space.validate(a)) for a in frame["arch"]])
    flat["latency_ms"] = frame["latency_ms"]
    flat_path = tmp_path / "flat.parquet"
    flat.to_parquet(flat_path)
    code, _, err = run_cli("predictor", "fit", str(flat_path), "--space", str(space_py), "--model", "lut",
                           "--out", str(tmp_path / "f.json"))
    assert code == 0, err

    bad = frame.copy()
    bad.loc[5, "latency_ms"] = -2.0
    bad.to_csv(tmp_path / "neg.csv", index=False)
    code, _, err = run_cli("predictor", "fit", str(tmp_path / "neg.csv"), "--space", str(space_py))
    assert code == 2 and "row 5" in err and "must be > 0" in err
    bad.loc[5, "latency_ms"] = np.nan
    bad.to_csv(tmp_path / "nan.csv", index=False)
    code, _, err = run_cli("predictor", "fit", str(tmp_path / "nan.csv"), "--space", str(space_py))
    assert code == 2 and "row 5" in err and "NaN" in err
    bad.loc[5, "latency_ms"] = 1.0
    bad.loc[9, "arch"] = json.dumps({"n_layer": 2, "d_model": 100, "layers": []})
    bad.to_csv(tmp_path / "foreign.csv", index=False)
    code, _, err = run_cli("predictor", "fit", str(tmp_path / "foreign.csv"), "--space", str(space_py))
    assert code == 2 and "row 9" in err and "d_model" in err
    frame.drop(columns=["latency_ms"]).to_csv(tmp_path / "nolat.csv", index=False)
    code, _, err = run_cli("predictor", "fit", str(tmp_path / "nolat.csv"), "--space", str(space_py))
    assert code == 2 and "no latency column" in err
    code, _, err = run_cli("predictor", "fit", str(data), "--space", str(space_py), "--target", "ms_total")
    assert code == 2 and "missing target column 'ms_total'" in err
    code, _, err = run_cli("predictor", "fit", str(data), "--space", str(space_py), "--model", "xgboost")
    assert code == 2 and "unknown model 'xgboost'" in err


def test_show_rejects_foreign_file(run_cli, tmp_path):
    f = tmp_path / "x.json"
    f.write_text("[1, 2]")
    code, _, err = run_cli("predictor", "show", str(f))
    assert code == 2 and "not an archlab predictor" in err


SUPERNET_FILE = '''
import torch
from torch import nn
from archlab.spaces.library import mlp_space

class Tiny:
    """Duck-typed supernet: space, extract(arch), example_input(batch)."""
    space = mlp_space(width=(8, 16))
    def extract(self, arch):
        layers, prev = [], 6
        for layer in arch["layers"]:
            layers += [nn.Linear(prev, layer["width"]), nn.ReLU()]
            prev = layer["width"]
        return nn.Sequential(*layers, nn.Linear(prev, 2))
    def example_input(self, batch):
        return torch.zeros(batch, 6)

net = Tiny()
'''


def test_profile_cli(run_cli, tmp_path):
    src = tmp_path / "tiny.py"
    src.write_text(SUPERNET_FILE)
    run = tmp_path / "run"
    args = ("profile", str(src), "--n", "4", "--repeats", "3", "--warmup", "1", "--anchors", "1", "--out", str(run))
    code, stdout, err = run_cli(*args, "--target", "cpu:threads=1,batch=2")
    assert code == 0, err
    assert "profiled 4 architectures on cpu:threads=1,batch=2" in stdout and "noise floor" in stdout
    assert "machine speed:" in stdout  # the reference is on by default
    df = pd.read_parquet(run / "latency.parquet")
    assert set(df["batch"]) == {2} and json.loads(df["input_shape"].iloc[0]) == [2, 6]
    assert df["ref_ms"].notna().all()
    alone = tmp_path / "alone"
    code, stdout, err = run_cli(*args[:-1], str(alone), "--no-reference")
    assert code == 0, err
    assert "machine speed:" not in stdout
    assert pd.read_parquet(alone / "latency.parquet")["ref_ms"].isna().all()
    code, _, err = run_cli(*args, "--target", "gpu:threads=1")
    assert code == 2 and "unknown target kind 'gpu'" in err
    code, _, err = run_cli("profile", str(src), "--n", "2")
    assert code == 2 and "needs --out" in err
    # fit straight from the run directory (space read from the table)
    code, stdout, err = run_cli("predictor", "fit", str(run), "--model", "ridge", "--holdout", "0.5")
    assert code == 0, err
    assert (run / "predictors" / "latency.json").is_file()
