"""Profile architectures of a space on a target: the Python API behind ``archlab profile``.

``profile(model, run_dir, n=300, target="cpu:threads=1,batch=1")`` samples architectures
(``sampling.sample_profile_archs``), extracts each one as a plain module, times it (warm-up,
then ``repeats`` runs: median, p10, p90, spread), counts parameters, MACs and peak memory,
and appends a row per architecture to ``run_dir/latency.parquet``. A fixed set of anchor
architectures is timed once unrecorded (the process warms up), then re-timed at the start,
every ``anchor_every`` architectures and at the end;
``noise_report`` turns those into the noise floor and the drift. A killed run resumes: archs
already in the table for the same target are skipped.

The machine's speed is not constant: on a shared CPU the median of a 0.1 s window of runs of
one model moves by tens of percent within seconds (other tenants, clocks), far faster than
anchors every few seconds can follow. With ``reference=True`` (default) each architecture's
runs are interleaved in blocks with runs of a fixed reference architecture (not an anchor),
and its timings are scaled by ``reference scale / reference median in the same window``:
the latency at the run's typical speed (``raw_ms`` and ``ref_ms`` keep what was read). The
scale is the reference's median when the table was started (a resumed run reuses it), so
rows of one table stay comparable. Per-layer timings get the same factor.

With a single top-level per-layer block (``layers``), each block of the extracted module is
also timed on its own (forward hooks, ``layer_repeats`` passes; CPU targets) into the
``layer_ms`` column: the per-layer timings a lookup-table predictor is built from.

``model`` is a supernet (``extract`` + ``example_input``) or any callable
``build(arch) -> (module, example_input)`` (give ``space=`` then).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from archlab.core.progress import progress
from archlab.spaces import Arch, SearchSpace

from .errors import ProfilingError
from .measure import count_costs, time_layers, timing_stats
from .sampling import anchor_archs, reference_arch, sample_profile_archs
from .table import LatencyTable, input_description
from .targets import Runtime, Target, parse_target, runtime_for


@dataclass
class ProfileSettings:
    """Settings of a profiling run (``Experiment.profile`` holds the same keys)."""

    n: int = 300
    target: str = "cpu:threads=1,batch=1"
    seed: int = 0
    warmup: int = 10
    repeats: int = 30
    anchors: int = 3
    anchor_every: int = 25
    flush_every: int = 10
    layer_repeats: int = 10
    reference: bool = True
    #: blocks the repeats are split into when interleaved with the reference
    blocks: int = 6

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any] | None, **overrides: Any) -> ProfileSettings:
        """Validate a settings dict (unknown keys and bad values are errors naming the key)."""
        allowed = [f.name for f in fields(cls)]
        merged = {**dict(d or {}), **{k: v for k, v in overrides.items() if v is not None}}
        for k in merged:
            if k not in allowed:
                raise ProfilingError(f"profile settings: unknown key {k!r}; allowed: {', '.join(allowed)}")
        s = cls(**merged)
        if not isinstance(s.reference, bool):
            raise ProfilingError(f"profile settings: reference must be true or false, got {s.reference!r}")
        for k in ("n", "repeats", "flush_every", "anchor_every", "blocks"):
            v = getattr(s, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ProfilingError(f"profile settings: {k} must be an integer >= 1, got {v!r}")
        for k in ("warmup", "anchors", "seed", "layer_repeats"):
            v = getattr(s, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ProfilingError(f"profile settings: {k} must be an integer >= 0, got {v!r}")
        parse_target(s.target)
        return s


Builder = Callable[[Arch], tuple[Any, Any]]


def _builder(model: Any, batch: int, space: SearchSpace | None) -> tuple[Builder, SearchSpace]:
    if hasattr(model, "extract") and hasattr(model, "example_input"):
        net = model

        def build(arch: Arch) -> tuple[Any, Any]:
            return net.extract(arch), net.example_input(batch)

        return build, space or net.space
    if callable(model):
        if space is None:
            raise ProfilingError("profiling a build(arch) callable needs space=...")
        return model, space
    raise ProfilingError(f"cannot profile a {type(model).__name__}: give a supernet or build(arch) -> (module, input)")


class _Session:
    def __init__(self, build: Builder, space: SearchSpace, runtime: Runtime, settings: ProfileSettings,
                 table: LatencyTable, reference: Arch | None = None) -> None:
        self.build, self.space, self.runtime, self.s, self.table = build, space, runtime, settings, table
        self.target: Target = runtime.target
        self.session = uuid.uuid4().hex[:12]
        self.pending: list[dict[str, Any]] = []
        old = table.read()
        self.seq = len(old)
        # the one top-level per-layer block whose layers are timed one by one
        blocks = [k for k, p in space.params.items() if hasattr(p, "params") and hasattr(p, "count")]
        self.layered = blocks[0] if len(blocks) == 1 else None
        self.reference = reference
        self.ref_fn: Callable[[], Any] | None = None
        self.ref_scale: float | None = None
        if reference is not None:
            module, x = build(reference)
            self.ref_fn = runtime.prepare(module, x)
            if not old.empty and "ref_scale_ms" in old:  # a resumed table keeps its scale
                mine = old[(old["target"] == self.target.spec) & (old["ref_arch"] == reference.key)]
                scales = mine["ref_scale_ms"].dropna()
                self.ref_scale = float(scales.iloc[0]) if len(scales) else None

    def _timings(self, fn: Callable[[], Any]) -> tuple[np.ndarray, float | None]:
        """``repeats`` timings of ``fn`` and the reference's median over the same window
        (``None`` without a reference): blocks of ``fn`` runs alternate with blocks of
        reference runs, each block after one unrecorded run (the other model ran last)."""
        s, rt = self.s, self.runtime
        if self.ref_fn is None:
            return rt.time(fn, s.warmup, s.repeats), None
        k = min(s.blocks, s.repeats)
        sizes = [s.repeats // k + (1 if i < s.repeats % k else 0) for i in range(k)]
        mine, ref = [], []
        for i, size in enumerate(sizes):
            mine.append(rt.time(fn, s.warmup if i == 0 else 1, size))
            ref.append(rt.time(self.ref_fn, 1, size))
        return np.concatenate(mine), float(np.median(np.concatenate(ref)))

    def measure(self, arch: Arch, kind: str, anchor: int = -1) -> dict[str, Any]:
        module, x = self.build(arch)
        costs = count_costs(module, x, self.runtime)
        fn = self.runtime.prepare(module, x)
        ms, ref_ms = self._timings(fn)
        factor = 1.0 if ref_ms is None or self.ref_scale is None else self.ref_scale / ref_ms
        stats = timing_stats(ms * factor)
        layers = None
        if self.s.layer_repeats and self.layered is not None:
            layers = time_layers(module, x, self.runtime, len(arch[self.layered]), self.s.layer_repeats)
            if layers is not None:
                layers = [v * factor for v in layers]
        row = {
            "kind": kind, "anchor": anchor, "arch": arch.key, "arch_digest": arch.digest,
            "summary": self.space.summary(arch), **stats, **costs,
            "raw_ms": float(np.median(ms)), "ref_ms": ref_ms if ref_ms is not None else float("nan"),
            "ref_scale_ms": self.ref_scale if self.ref_scale is not None else float("nan"),
            "ref_arch": self.reference.key if self.reference is not None else "",
            "target": self.target.spec, "runtime": self.target.runtime, "device": self.target.device,
            "threads": self.target.threads, "batch": self.target.batch, "dtype": self.target.dtype,
            **input_description(x), "layer_ms": json.dumps(layers) if layers is not None else "",
            "warmup": self.s.warmup, "seq": self.seq,
            "session": self.session, "timestamp": time.time(),
        }
        self.seq += 1
        self.pending.append(row)
        return row

    def prime(self, archs: Sequence[Arch]) -> None:
        """Time ``archs`` once and record nothing: the first timings of a process run slower
        (allocator growth, kernel selection, caches and clocks settling; on this machine the
        first anchor round read up to 40 % high), which would pose as drift. A new table's
        reference scale is the reference's median over the next stretch of runs."""
        for arch in archs:
            module, x = self.build(arch)
            self.runtime.time(self.runtime.prepare(module, x), self.s.warmup, self.s.repeats)
        if self.ref_fn is not None and self.ref_scale is None:
            self.ref_scale = float(np.median(self.runtime.time(self.ref_fn, self.s.warmup, 4 * self.s.repeats)))

    def flush(self) -> None:
        if self.pending:
            self.table.append(self.pending)
            self.pending = []


def profile(model: Any, run_dir: str | Path, archs: Sequence[Arch] | None = None, *,
            space: SearchSpace | None = None, settings: ProfileSettings | Mapping[str, Any] | None = None,
            **overrides: Any) -> Any:
    """Measure architectures into ``run_dir/latency.parquet``; returns the whole table.

    ``archs`` defaults to ``sample_profile_archs(space, n, seed)``; ``settings`` (or keyword
    overrides such as ``n=50, target="cpu:threads=1,batch=1"``) as in ``ProfileSettings``.
    """
    s = settings if isinstance(settings, ProfileSettings) else ProfileSettings.from_mapping(settings, **overrides)
    runtime = runtime_for(s.target)
    build, space = _builder(model, runtime.target.batch, space)
    table = LatencyTable(run_dir, space)
    if archs is None:
        archs = sample_profile_archs(space, s.n, s.seed)
    else:
        archs = [space.validate(a, check_constraints=False) for a in archs]
    done = table.measured(runtime.target.spec)
    todo = [a for a in archs if a.key not in done]
    anchors = anchor_archs(space, s.anchors, s.seed)
    if not todo:
        return table.read()
    reference = reference_arch(space, s.seed, exclude=anchors) if s.reference else None
    with runtime.session():
        sess = _Session(build, space, runtime, s, table, reference)
        bar = progress(total=len(archs), initial=len(archs) - len(todo), desc=f"profile {runtime.target.spec}",
                       unit="arch")
        try:
            sess.prime(anchors or todo[:1])
            for j, a in enumerate(anchors):
                sess.measure(a, "anchor", j)
            for i, arch in enumerate(todo, 1):
                row = sess.measure(arch, "arch")
                bar.update(1)
                bar.set_postfix(ms=f"{row['latency_ms']:.3g}", spread=f"{row['spread']:.1%}")
                if i % s.anchor_every == 0 and i < len(todo):
                    for j, a in enumerate(anchors):
                        sess.measure(a, "anchor", j)
                if i % s.flush_every == 0:
                    sess.flush()
            for j, a in enumerate(anchors):
                sess.measure(a, "anchor", j)
        finally:
            sess.flush()
            bar.close()
    return table.read()


def noise_report(frame: Any) -> dict[str, Any]:
    """Noise from the anchor re-timings of a latency table (``profile``'s result).

    - ``noise_floor_pct``: mean over anchors of the mean absolute deviation of an anchor's
      medians from their own median, in percent: the MAPE a perfect predictor would show;
    - ``anchor_cv_pct``: mean coefficient of variation of anchor medians (%);
    - ``drift_pct``: largest |last - first| / median over anchors (%);
    - ``median_spread``: median within-measurement (p90 - p10) / median of arch rows.
    """
    if frame is None or len(frame) == 0 or "kind" not in frame:
        raise ProfilingError("the latency table is empty; profile first")
    anchors = frame[frame["kind"] == "anchor"].sort_values("seq")
    per: list[dict[str, Any]] = []
    for (target, idx), g in anchors.groupby(["target", "anchor"]):
        ms = g["latency_ms"].to_numpy(dtype=np.float64)
        if ms.size < 2:
            continue
        med = float(np.median(ms))
        per.append({"target": target, "anchor": int(idx), "arch": g["arch"].iloc[0], "n": int(ms.size),
                    "median_ms": med, "mad_pct": float(100 * np.mean(np.abs(ms - med)) / med),
                    "cv_pct": float(100 * ms.std(ddof=1) / ms.mean()),
                    "drift_pct": float(100 * (ms[-1] - ms[0]) / med)})
    arch_rows = frame[frame["kind"] == "arch"]
    return {
        "noise_floor_pct": float(np.mean([p["mad_pct"] for p in per])) if per else float("nan"),
        "anchor_cv_pct": float(np.mean([p["cv_pct"] for p in per])) if per else float("nan"),
        "drift_pct": float(max((abs(p["drift_pct"]) for p in per), default=float("nan"))),
        "median_spread": float(arch_rows["spread"].median()) if len(arch_rows) else float("nan"),
        "n_archs": len(arch_rows),
        "anchors": per,
    }


__all__ = ["ProfileSettings", "noise_report", "profile"]
