"""Profile architectures of a space on a target: the Python API behind ``archlab profile``.

``profile(model, run_dir, n=300, target="cpu:threads=1,batch=1")`` samples architectures
(``sampling.sample_profile_archs``), extracts each one as a plain module, times it (warm-up,
then ``repeats`` runs: median, p10, p90, spread), counts parameters, MACs and peak memory,
and appends a row per architecture to ``run_dir/latency.parquet``. A fixed set of anchor
architectures is timed once unrecorded (the process warms up), then re-timed at the start,
every ``anchor_every`` architectures and at the end;
``noise_report`` turns those into the noise floor and the drift. A killed run resumes: archs
already in the table for the same target are skipped.

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

from archlab.spaces import Arch, SearchSpace
from archlab.spaces.io import progress

from .errors import ProfilingError
from .measure import count_costs, time_layers, timing_stats
from .sampling import anchor_archs, sample_profile_archs
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

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any] | None, **overrides: Any) -> ProfileSettings:
        """Validate a settings dict (unknown keys and bad values are errors naming the key)."""
        allowed = [f.name for f in fields(cls)]
        merged = {**dict(d or {}), **{k: v for k, v in overrides.items() if v is not None}}
        for k in merged:
            if k not in allowed:
                raise ProfilingError(f"profile settings: unknown key {k!r}; allowed: {', '.join(allowed)}")
        s = cls(**merged)
        for k in ("n", "repeats", "flush_every", "anchor_every"):
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
                 table: LatencyTable) -> None:
        self.build, self.space, self.runtime, self.s, self.table = build, space, runtime, settings, table
        self.target: Target = runtime.target
        self.session = uuid.uuid4().hex[:12]
        self.pending: list[dict[str, Any]] = []
        self.seq = len(table.read())
        # the one top-level per-layer block whose layers are timed one by one
        blocks = [k for k, p in space.params.items() if hasattr(p, "params") and hasattr(p, "count")]
        self.layered = blocks[0] if len(blocks) == 1 else None

    def measure(self, arch: Arch, kind: str, anchor: int = -1) -> dict[str, Any]:
        module, x = self.build(arch)
        costs = count_costs(module, x, self.runtime)
        fn = self.runtime.prepare(module, x)
        stats = timing_stats(self.runtime.time(fn, self.s.warmup, self.s.repeats))
        layers = None
        if self.s.layer_repeats and self.layered is not None:
            layers = time_layers(module, x, self.runtime, len(arch[self.layered]), self.s.layer_repeats)
        row = {
            "kind": kind, "anchor": anchor, "arch": arch.key, "arch_digest": arch.digest,
            "summary": self.space.summary(arch), **stats, **costs,
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
        first anchor round read up to 40 % high), which would pose as drift."""
        for arch in archs:
            module, x = self.build(arch)
            self.runtime.time(self.runtime.prepare(module, x), self.s.warmup, self.s.repeats)

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
    sess = _Session(build, space, runtime, s, table)
    with runtime.session():
        if not todo:
            return table.read()
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
