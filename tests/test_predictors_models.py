"""LatencyPredictor / AccuracyPredictor: fit, predict, score, safe save/load, bad input."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from archlab.predictors import (
    SCORE_KEYS,
    AccuracyPredictor,
    LatencyPredictor,
    PredictorError,
    load_measurements,
    score,
)
from archlab.spaces.library import mlp_space, transformer_lm_space

SMALL = {"mlp": {"hidden": (32, 32), "epochs": 60}}
OPTIONS = {
    "ridge": {}, "gbm": {"trees": 60}, "mlp": SMALL["mlp"], "lut": {},
    "ensemble": {"member_options": {"mlp": SMALL["mlp"], "gbm": {"trees": 60}}},
}


def synthetic_latency(space, archs, noise=0.01, seed=0):
    """An additive 'true' latency: a base per width plus a cost per layer, ms."""
    rng = np.random.default_rng(seed)
    out = []
    for a in archs:
        d = a["d_model"]
        t = 0.2 + d / 400 + sum(0.05 + d * d * 4e-6 + d * layer["ffn"] * 3e-6 + 0.01 * layer["n_head"]
                                for layer in a["layers"])
        out.append(t * (1 + noise * rng.standard_normal()))
    return np.asarray(out)


@pytest.fixture(scope="module")
def lm():
    space = transformer_lm_space()
    archs = space.sample_many(260, seed=1)
    return space, archs, synthetic_latency(space, archs)


@pytest.mark.parametrize("model", ["ridge", "gbm", "mlp", "lut", "ensemble"])
def test_round_trip_every_model(lm, tmp_path, model):
    space, archs, y = lm
    p = LatencyPredictor(space, model=model, model_options=OPTIONS[model]).fit(archs[:200], y[:200])
    pred = p.predict(archs[200:])
    # the numpy re-implementation equals scikit-learn's own prediction
    F = p.featurizer.transform(archs[200:])
    np.testing.assert_allclose(pred, p.model.sk_predict(F), rtol=1e-9, atol=1e-9)
    s = p.score(archs[200:], y[200:])
    assert set(s) == set(SCORE_KEYS)
    assert s["mape"] < 12.0, s  # learns the synthetic latency (noise is 1%)
    assert s["kendall_tau"] > 0.7, s
    path = p.save(tmp_path / "latency.json")
    assert (tmp_path / "latency.safetensors").is_file()
    q = LatencyPredictor.load(path)
    np.testing.assert_array_equal(q.predict(archs[200:]), pred)
    doc = json.loads(path.read_text())
    assert doc["scores"]["mape"] == pytest.approx(s["mape"])
    assert len(doc["holdout"]["y_true"]) == 60 and len(doc["holdout"]["y_pred"]) == 60
    assert q.space == space


def test_ensemble_uncertainty(lm):
    space, archs, y = lm
    p = LatencyPredictor(space, model="ensemble", model_options=OPTIONS["ensemble"]).fit(archs[:200], y[:200])
    mean, std = p.predict(archs[200:], return_std=True)
    assert mean.shape == std.shape == (60,)
    assert np.all(std >= 0) and std.mean() > 0
    np.testing.assert_allclose(mean, p.predict(archs[200:]))


def test_lut_is_additive_over_layers(lm):
    space, archs, y = lm
    p = LatencyPredictor(space, model="lut").fit(archs, y)
    keys = p.model.row_keys(p.featurizer.transform(archs[:1]))[0]
    assert keys[0].startswith("base|d_model=") and len(keys) == 1 + archs[0]["n_layer"]
    assert all(v >= 0 for v in p.model.arrays["values"])
    assert p.score(archs, y)["mape"] < 5.0


def test_cost_features_present(lm):
    space, archs, _ = lm
    p = LatencyPredictor(space, model="ridge")
    F = p.featurizer.fit(archs[:3])
    names = p.featurizer.names
    assert "cost.macs" in names and "cost.layers.0.macs" in names and "cost.layers.0.params" in names
    a = archs[0]
    d = a["d_model"]
    inner = a["layers"][0]["n_head"] * 32  # TransformerLM default head_dim: 128 // 4
    layer0 = 4 * d * inner + 2 * 128 * inner + 2 * d * a["layers"][0]["ffn"]
    assert F[0, names.index("cost.layers.0.macs")] == layer0


def test_score_known_values():
    s = score([1.0, 2.0, 3.0, 4.0], [1.0, 2.1, 3.6, 3.9])
    assert s["rmse"] == pytest.approx(np.sqrt((0 + 0.01 + 0.36 + 0.01) / 4))
    assert s["mape"] == pytest.approx(100 * (0 + 0.05 + 0.2 + 0.025) / 4)
    assert s["within_5"] == pytest.approx(0.75)  # 0.05 counts as within
    assert s["within_10"] == pytest.approx(0.75)
    assert s["kendall_tau"] == pytest.approx(1.0)
    assert s["spearman"] == pytest.approx(1.0)
    assert score([1, 2, 3], [3, 2, 1])["kendall_tau"] == pytest.approx(-1.0)


def _fitted(tmp_path, lm, model="ridge"):
    space, archs, y = lm
    p = LatencyPredictor(space, model=model, model_options=OPTIONS[model]).fit(archs[:100], y[:100])
    return p.save(tmp_path / "p.json")


def test_tampered_json_rejected(tmp_path, lm):
    path = _fitted(tmp_path, lm)
    doc = json.loads(path.read_text())
    doc["model"]["target"] = "log"
    path.write_text(json.dumps(doc))
    with pytest.raises(PredictorError, match="checksum"):
        LatencyPredictor.load(path)


def test_tampered_arrays_rejected(tmp_path, lm):
    path = _fitted(tmp_path, lm, "gbm")
    arr = tmp_path / "p.safetensors"
    data = bytearray(arr.read_bytes())
    data[-3] ^= 0xFF
    arr.write_bytes(bytes(data))
    with pytest.raises(PredictorError, match="SHA-256"):
        LatencyPredictor.load(path)


def test_foreign_files_rejected(tmp_path, lm):
    foreign = tmp_path / "x.json"
    foreign.write_text('{"hello": 1}')
    with pytest.raises(PredictorError, match="not an archlab predictor"):
        LatencyPredictor.load(foreign)
    blob = tmp_path / "y.json"
    blob.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(PredictorError, match="not an archlab predictor"):
        LatencyPredictor.load(blob)
    path = _fitted(tmp_path, lm)
    with pytest.raises(PredictorError, match="not a 'accuracy'"):
        AccuracyPredictor.load(path)


def test_loading_never_unpickles(tmp_path, lm, monkeypatch):
    path = _fitted(tmp_path, lm, "ensemble")

    def boom(*a, **k):
        raise AssertionError("pickle used while loading a predictor")

    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "Unpickler", boom)
    monkeypatch.setattr(np, "load", boom)
    q = LatencyPredictor.load(path)
    assert q.predict(lm[1][:5]).shape == (5,)


def test_bad_inputs(lm):
    space, archs, y = lm
    p = LatencyPredictor(space, model="ridge")
    with pytest.raises(PredictorError, match="unknown model 'xgb'"):
        LatencyPredictor(space, model="xgb")
    bad = y[:50].copy()
    bad[7] = np.nan
    with pytest.raises(PredictorError, match="row 7"):
        p.fit(archs[:50], bad)
    bad[7] = -1.0
    with pytest.raises(PredictorError, match=r"row 7 .* must be > 0"):
        p.fit(archs[:50], bad)
    other = mlp_space().sample_many(5, seed=0)
    with pytest.raises(PredictorError, match="row 0: not an architecture of space 'transformer_lm'"):
        p.fit(other, np.ones(5))
    with pytest.raises(PredictorError, match="not fitted"):
        p.predict(archs[:2])
    with pytest.raises(PredictorError, match="3 rows but y has 2"):
        p.fit(archs[:3], [1.0, 2.0])


def test_dataframe_features_and_accuracy_predictor():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.uniform(1, 5, 200), "b": rng.uniform(0, 1, 200)})
    acc = 0.5 + 0.1 * X["a"] - 0.2 * X["b"] ** 2
    p = AccuracyPredictor(model="gbm").fit(X, acc, holdout=0.2)
    assert p.scores is not None and p.scores["kendall_tau"] > 0.8
    assert len(p.holdout["y_true"]) == 40
    with pytest.raises(PredictorError, match="missing feature column 'b'"):
        p.predict(X[["a"]])
    Xn = X.copy()
    Xn.loc[3, "a"] = np.nan
    with pytest.raises(PredictorError, match="'a': row 3"):
        p.predict(Xn)


HAT = Path(__file__).resolve().parents[2] / "shared" / "data" / "hat_latency" / "wmt14ende_cpu_xeon_all.csv"


@pytest.mark.skipif(not HAT.is_file(), reason="HAT data not available")
def test_hat_csv_fit_reaches_sane_mape():
    m = load_measurements(HAT, target="latency_mean_encoder+latency_mean_decoder")
    assert len(m) == 2000 and "decoder_layer_num" in m.features
    assert not any(c.startswith("latency") for c in m.features)
    perm = np.random.default_rng(0).permutation(len(m))
    tr, te = perm[:1600], perm[1800:]
    p = LatencyPredictor(model="ridge").fit(m.X.iloc[tr], m.y[tr])
    assert p.featurizer.cost == "hat_columns"
    s = p.score(m.X.iloc[te], m.y[te])
    assert s["mape"] < 6.0 and s["kendall_tau"] > 0.85, s


def test_lut_from_exact_layer_timings_is_exact(lm):
    space, archs, _ = lm

    def layer_ms(a, layer):
        return 0.05 + a["d_model"] * layer["ffn"] * 1e-5 + 0.02 * layer["n_head"]

    timings = [[layer_ms(a, layer) for layer in a["layers"]] for a in archs]
    y = np.asarray([0.3 + a["d_model"] / 1000 + sum(t) for a, t in zip(archs, timings)])
    p = LatencyPredictor(space, model="lut").fit(archs[:200], y[:200], layer_ms=timings[:200])
    assert p.model.options["source"] == "layer_timings"
    np.testing.assert_allclose(p.predict(archs[200:]), y[200:], rtol=1e-9)


@pytest.mark.parametrize("model", ["ridge", "gbm", "mlp"])
def test_consistent_checksum_but_wrong_shapes_rejected(tmp_path, lm, model):
    """A crafted file (checksums recomputed) with arrays of the wrong shape is a clear error."""
    from archlab.predictors import persistence

    path = _fitted(tmp_path, lm, model)
    doc, arrays = persistence.read(path, "latency")
    key = {"ridge": "coef", "gbm": "feature", "mlp": "w0"}[model]
    arrays[key] = arrays[key][:-1] if model != "gbm" else arrays[key] + 10_000
    body = {k: v for k, v in doc.items() if k not in ("archlab_predictor", "arrays", "checksum")}
    persistence.write(path, body, arrays)
    with pytest.raises(PredictorError, match="predictor file"):
        LatencyPredictor.load(path)
