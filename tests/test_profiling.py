"""Profiling harness: targets, sampling, measurement rows, anchors, resume, noise report."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from torch import nn

from archlab.predictors import LatencyPredictor, ProfilingError, load_measurements
from archlab.predictors.profiling import ProfileSettings, noise_report, profile
from archlab.predictors.sampling import depth_width, sample_profile_archs
from archlab.predictors.table import LatencyTable
from archlab.predictors.targets import parse_target
from archlab.spaces.library import mlp_space, transformer_lm_space

FAST = {"warmup": 1, "repeats": 3, "anchors": 2, "anchor_every": 4, "flush_every": 3}


def small_space():
    return mlp_space(width=(8, 16, 32))


class Counting:
    """build(arch) for a plain MLP that counts how often each arch is built."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, arch):
        self.calls.append(arch.key)
        layers, prev = [], 12
        for layer in arch["layers"]:
            layers += [nn.Linear(prev, layer["width"]), nn.ReLU()]
            prev = layer["width"]
        torch.manual_seed(0)
        return nn.Sequential(*layers, nn.Linear(prev, 3)), torch.randn(1, 12)


def test_parse_target():
    t = parse_target("cpu:threads=1,batch=1")
    assert (t.runtime, t.device, t.threads, t.batch, t.dtype) == ("torch", "cpu", 1, 1, "float32")
    assert parse_target(t.spec) == t
    c = parse_target("cuda:batch=8,dtype=float16,device=1")
    assert (c.device, c.batch, c.dtype) == ("cuda:1", 8, "float16")
    assert parse_target("onnx:threads=2").runtime == "onnxruntime"
    with pytest.raises(ProfilingError, match="unknown target kind 'tpu'"):
        parse_target("tpu:threads=1")
    with pytest.raises(ProfilingError, match="unknown key 'thread'"):
        parse_target("cpu:thread=1")
    with pytest.raises(ProfilingError, match="batch must be >= 1"):
        parse_target("cpu:batch=0")
    with pytest.raises(ProfilingError, match="is not an integer"):
        parse_target("cpu:threads=x")
    with pytest.raises(ProfilingError, match="float16 needs the cuda target"):
        parse_target("cpu:dtype=float16")


def test_settings_reject_unknown_keys():
    with pytest.raises(ProfilingError, match="unknown key 'repeat'"):
        ProfileSettings.from_mapping({"repeat": 3})
    with pytest.raises(ProfilingError, match="repeats must be an integer >= 1"):
        ProfileSettings.from_mapping({"repeats": 0})
    assert ProfileSettings.from_mapping({"n": 5}, repeats=7).repeats == 7


def test_sampling_covers_the_space():
    space = transformer_lm_space()
    archs = sample_profile_archs(space, 60, seed=3)
    assert len({a.key for a in archs}) == 60
    assert archs[0] == space.smallest() and archs[1] == space.largest()
    depth, width = depth_width(space, archs)
    assert set(depth) == {1.0, 2.0, 3.0, 4.0}  # every depth appears
    assert width.min() < 0.2 and width.max() > 0.8
    assert sample_profile_archs(space, 60, seed=3) == archs  # same seed, same list


def test_profile_rows_anchors_and_resume(tmp_path):
    space = small_space()
    build = Counting()
    with pytest.raises(KeyboardInterrupt):
        def dying(arch):
            if len(build.calls) >= 7:  # killed during the 8th measurement
                raise KeyboardInterrupt
            return build(arch)
        profile(dying, tmp_path, space=space, n=8, **FAST)
    partial = LatencyTable(tmp_path).read()
    n_partial = int((partial["kind"] == "arch").sum())
    assert 0 < n_partial < 8  # flushed rows survive the kill
    measured_before = set(partial.loc[partial["kind"] == "arch", "arch"])

    build.calls.clear()
    df = profile(build, tmp_path, space=space, n=8, **FAST)
    arch_rows = df[df["kind"] == "arch"]
    assert len(arch_rows) == 8 and arch_rows["arch"].is_unique
    resumed = arch_rows[arch_rows["session"] != partial["session"].iloc[0]]
    assert not measured_before & set(resumed["arch"])  # nothing measured twice
    n_anchor_rows = int((df["session"] == resumed["session"].iloc[0]).sum()) - len(resumed)
    n_primed = FAST["anchors"]  # the anchors run once unrecorded before the first round
    n_ref = 1  # the reference architecture, built once per session
    assert len(build.calls) == n_ref + len(resumed) + n_anchor_rows + n_primed == (
        n_ref + 8 - n_partial + n_anchor_rows + n_primed)
    # primed: the anchors themselves
    assert build.calls[n_ref:n_ref + n_primed] == build.calls[n_ref + n_primed:n_ref + 2 * n_primed]
    # the reference is none of the anchors, and the resumed session kept the first one's scale
    reference = build.calls[0]
    assert reference not in set(df.loc[df["kind"] == "anchor", "arch"])
    assert set(df["ref_arch"]) == {reference}
    assert df["ref_scale_ms"].nunique() == 1 and df["ref_scale_ms"].iloc[0] > 0
    np.testing.assert_allclose(df["latency_ms"], df["raw_ms"] * df["ref_scale_ms"] / df["ref_ms"], rtol=1e-9)
    for col in ("latency_ms", "p10_ms", "p90_ms", "spread", "params", "macs", "peak_mem_bytes",
                "target", "runtime", "device", "threads", "batch", "dtype", "input_shape", "input_dtype"):
        assert col in df.columns, col
    assert (arch_rows["p10_ms"] <= arch_rows["latency_ms"]).all()
    assert (arch_rows["latency_ms"] <= arch_rows["p90_ms"]).all()
    assert set(arch_rows["target"]) == {"cpu:threads=1,batch=1"}
    assert json.loads(arch_rows["input_shape"].iloc[0]) == [1, 12]
    # MACs from FlopCounterMode equal the linear layers' in*out products
    row = arch_rows.iloc[0]
    arch = space.validate(row["arch"])
    widths = [12] + [layer["width"] for layer in arch["layers"]] + [3]
    assert row["macs"] == sum(a * b for a, b in itertools.pairwise(widths))
    assert row["params"] == sum(a * b + b for a, b in itertools.pairwise(widths))
    assert row["peak_mem_bytes"] >= 4 * row["params"]
    anchors = df[df["kind"] == "anchor"]
    assert set(anchors["anchor"]) == {0, 1}
    assert anchors.groupby("anchor").size().min() >= 3  # re-timed through the run
    rep = noise_report(df)
    assert rep["n_archs"] == 8 and rep["noise_floor_pct"] >= 0 and len(rep["anchors"]) == 2

    # a third call finds everything measured and measures nothing
    build.calls.clear()
    again = profile(build, tmp_path, space=space, n=8, **FAST)
    assert build.calls == [] and len(again) == len(df)

    # the table fits a predictor on its own (space from the parquet metadata)
    m = load_measurements(tmp_path / "latency.parquet", where={"kind": "arch"})
    assert m.space == space and len(m) == 8
    p = LatencyPredictor(m.space, model="ridge").fit(m.X, m.y)
    assert np.all(np.isfinite(p.predict(m.X)))


def test_table_of_another_space_rejected(tmp_path):
    profile(Counting(), tmp_path, space=small_space(), n=2, **FAST)
    with pytest.raises(ProfilingError, match="measured for space"):
        profile(Counting(), tmp_path, space=mlp_space(width=(8, 64)), n=2, **FAST)


def test_noise_report_known_values():
    import pandas as pd

    rows = []
    for seq, (anchor, ms) in enumerate([(0, 1.0), (1, 10.0), (0, 1.1), (1, 10.0), (0, 0.9), (1, 12.0)]):
        rows.append({"kind": "anchor", "anchor": anchor, "arch": f"a{anchor}", "target": "cpu:threads=1,batch=1",
                     "latency_ms": ms, "seq": seq, "spread": 0.1})
    rows.append({"kind": "arch", "anchor": -1, "arch": "x", "target": "cpu:threads=1,batch=1",
                 "latency_ms": 3.0, "seq": 6, "spread": 0.05})
    rep = noise_report(pd.DataFrame(rows))
    # anchor 0: median 1.0, |dev| = 0, .1, .1 -> 6.667%; anchor 1: median 10, |dev| 0, 0, 2 -> 6.667%
    assert rep["noise_floor_pct"] == pytest.approx(100 * 0.2 / 3)
    assert rep["drift_pct"] == pytest.approx(20.0)  # anchor 1: (12 - 10) / 10
    assert rep["median_spread"] == pytest.approx(0.05) and rep["n_archs"] == 1


def test_onnx_runtime_target(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    df = profile(Counting(), tmp_path, space=small_space(), n=2, target="onnx:threads=1", **FAST)
    rows = df[df["kind"] == "arch"]
    assert set(rows["runtime"]) == {"onnxruntime"} and (rows["latency_ms"] > 0).all()


class Blocks(nn.Module):
    def __init__(self, arch):
        super().__init__()
        widths = [12] + [layer["width"] for layer in arch["layers"]]
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(a, b), nn.ReLU()) for a, b in itertools.pairwise(widths))
        self.head = nn.Linear(widths[-1], 3)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def test_per_layer_timings_build_the_lookup_table(tmp_path):
    space = small_space()
    df = profile(lambda a: (Blocks(a), torch.randn(1, 12)), tmp_path, space=space, n=12, **FAST)
    rows = df[df["kind"] == "arch"]
    for _, r in rows.iterrows():
        lm = json.loads(r["layer_ms"])
        assert len(lm) == space.validate(r["arch"])["n_layer"] and all(v > 0 for v in lm)
    m = load_measurements(tmp_path / "latency.parquet", where={"kind": "arch"})
    assert m.layer_ms is not None and len(m.layer_ms) == 12
    p = LatencyPredictor(space, model="lut").fit(m.X, m.y, layer_ms=m.layer_ms)
    assert p.model.options["source"] == "layer_timings"
    # one entry per measured layer configuration plus one base entry: the median timing
    keys = p.model.keys
    assert "base|" in keys and any(k.startswith("layers||width=") for k in keys)


class _Sleeper(nn.Module):
    """A module whose forward takes ``ms`` times the machine's current slowness."""

    def __init__(self, ms: float, slowness: list[float]) -> None:
        super().__init__()
        self.ms, self.slowness = ms, slowness

    def forward(self, x):
        import time

        time.sleep(self.ms * self.slowness[0] / 1000)
        return x


def test_the_reference_cancels_a_machine_that_changes_speed(tmp_path):
    """The machine runs 1.6x slower during every other measurement: raw medians follow it,
    reference-scaled latencies do not (every arch costs the same here)."""
    space = small_space()
    slowness = [1.0]

    def build(arch):
        slowness[0] = 1.6 if slowness[0] == 1.0 else 1.0  # changes between measurements
        return _Sleeper(2.0, slowness), torch.zeros(1)

    settings = {"warmup": 1, "repeats": 12, "blocks": 4, "anchors": 0, "layer_repeats": 0}
    df = profile(build, tmp_path, space=space, n=10, **settings)
    rows = df[df["kind"] == "arch"]
    raw, scaled = rows["raw_ms"].to_numpy(), rows["latency_ms"].to_numpy()
    assert raw.max() / raw.min() > 1.4  # the slow phases show in what was read
    assert scaled.max() / scaled.min() < 1.12  # and are gone from the latencies
    off = profile(build, tmp_path / "off", space=space, n=10, reference=False, **settings)
    assert off["latency_ms"].max() / off["latency_ms"].min() > 1.4
    assert off["ref_ms"].isna().all() and (off["raw_ms"] == off["latency_ms"]).all()
    with pytest.raises(ProfilingError, match="reference must be true or false"):
        ProfileSettings.from_mapping({"reference": "yes"})
