"""NAS-Bench-201 as a real multi-objective search problem with an exact front.

``load_table(path)`` reads ``nb201_dev.csv`` (see ``../shared/data/README.md``) into the
archlab cell space (``cell_space("nb201_cell", 6, NB201_OPS)``: edge ``i`` is the ``i``-th
``op~j`` of the NB201 string, i.e. edges 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2).

``Problem``: objectives are an accuracy column (maximised) and one or two latency columns
(minimised). Hypervolume is measured on normalised losses, fixed for every sampler and seed:
error = 1 - acc / 100 and latency / (its maximum over all 15,625 cells), reference point 1 on
every axis (the data README's convention). ``hv_exact`` is the hypervolume of the exact front
found by enumeration; a run's gap after ``n`` distinct evaluations is ``1 - HV_n / hv_exact``.
A constraint ``latency <= bound`` (raw ms) restricts both the run's front and the exact one
to the feasible cells.

``bench_search()``: ``bench/search.py`` as a module, for the benchmarks that run its searches.
"""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: where the table is looked for: ``$ARCHLAB_DATA/nb201/...``, then ``../shared/data`` beside the
#: project (or beside the folder holding the project's worktrees)
TABLE = Path("nb201") / "nb201_dev.csv"
ACCURACIES = ("cifar100_acc", "imagenet16_acc")
DEVICES = ("1080ti_1_ms", "titan_rtx_1_ms", "titanxp_1_ms", "2080ti_1_ms", "gold_6226_ms", "silver_4114_ms",
           "samsung_a50_ms", "samsung_s7_ms", "essential_ph_1_ms")


def bench_search():
    """``bench/search.py`` as a module (imported by path: its name would clash with the
    project's ``search`` package)."""
    spec = importlib.util.spec_from_file_location("bench_search", Path(__file__).resolve().parent / "search.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def find_table(path: str | Path | None = None) -> Path | None:
    """``path``, else the shared data's table (see ``TABLE``); ``None`` when absent."""
    import os

    if path is not None:
        return Path(path) if Path(path).is_file() else None
    roots = [Path(os.environ["ARCHLAB_DATA"])] if os.environ.get("ARCHLAB_DATA") else []
    roots += [ROOT.parent / "shared" / "data", ROOT.parent.parent / "shared" / "data"]
    return next((r / TABLE for r in roots if (r / TABLE).is_file()), None)


def parse_arch_string(text: str) -> list[str]:
    """The six ops of an NB201 string ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``, in order."""
    ops = [tok.split("~")[0] for tok in text.replace("+", "").split("|") if tok]
    if len(ops) != 6:
        raise ValueError(f"not an NB201 cell string (6 edges expected): {text!r}")
    return ops


@dataclass
class Table:
    """All cells: ``keys`` (archlab ``Arch.key``), ``columns`` {name: float array}."""

    space: object
    keys: list[str]
    columns: dict[str, np.ndarray]
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {k: i for i, k in enumerate(self.keys)}


def load_table(path: str | Path) -> Table:
    """Read the NB201 table at ``path`` (raises ``FileNotFoundError`` when absent)."""
    from archlab.spaces.library import NB201_OPS, cell_space

    space = cell_space("nb201_cell", n_edges=6, ops=NB201_OPS)
    keys: list[str] = []
    cols: dict[str, list[float]] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            arch = space.validate({"edges": [{"op": o} for o in parse_arch_string(row["arch_string"])]})
            keys.append(arch.key)
            for k, v in row.items():
                if k != "arch_string":
                    cols.setdefault(k, []).append(float(v))
    return Table(space, keys, {k: np.asarray(v, dtype=float) for k, v in cols.items()})


class Problem:
    """One (accuracy, device[, device]) problem on ``table``; see the module docstring."""

    def __init__(self, table: Table, accuracy: str, devices: tuple[str, ...], bound: float | None = None) -> None:
        self.table, self.accuracy, self.devices, self.bound = table, accuracy, tuple(devices), bound
        self.name = f"{accuracy.removesuffix('_acc')}/" + "+".join(d.removesuffix("_ms") for d in devices)
        if bound is not None:
            self.name += f" (<= {bound:g} ms)"
        self.loss = np.column_stack([1.0 - table.columns[accuracy] / 100.0]
                                    + [table.columns[d] / table.columns[d].max() for d in devices])
        self.feasible = (np.ones(len(table.keys), dtype=bool) if bound is None
                         else table.columns[devices[0]] <= bound)
        self.ref = np.ones(self.loss.shape[1])
        from archlab.search.pareto import hypervolume_of

        self.hv_exact = hypervolume_of(self.loss[self.feasible], self.ref)

    def objectives(self) -> dict[str, tuple[str, object]]:
        """``run_search`` objectives reading the table: accuracy (max) and latencies (min)."""
        cols, index = self.table.columns, self.table.index

        def column(name: str):
            return lambda arch: float(cols[name][index[arch.key]])

        out: dict[str, tuple[str, object]] = {"acc": ("max", column(self.accuracy))}
        for d in self.devices:
            out[d.removesuffix("_ms")] = ("min", column(d))
        return out

    def latency_known(self, seed: int, n: int = 150, model: str = "lut") -> tuple[dict[str, object], dict]:
        """Latency as archlab's workflow gives it: per device, an archlab ``LatencyPredictor``
        (``model``) fitted on a profiling sample of ``n`` random cells' table latencies (its own
        seed ``50_000 + seed``; not counted as evaluations), as batch callables
        ``archs -> ms`` for the ``ehvi`` sampler's ``known`` option; and each predictor's
        Kendall tau against the whole table."""
        from scipy.stats import kendalltau

        from archlab.predictors import LatencyPredictor
        from archlab.spaces import Arch

        t = self.table
        archs = [Arch.from_json(k) for k in t.keys]
        rows = np.random.default_rng(50_000 + seed).choice(len(archs), n, replace=False)
        fns: dict[str, object] = {}
        taus: dict[str, float] = {}
        for d in self.devices:
            pred = LatencyPredictor(t.space, model=model, seed=seed).fit([archs[r] for r in rows], t.columns[d][rows])
            values = np.asarray(pred.predict(archs), dtype=float)
            taus[d] = float(kendalltau(values, t.columns[d]).statistic)
            fns[d.removesuffix("_ms")] = (lambda v: lambda batch: v[[t.index[a.key] for a in batch]])(values)
        return fns, taus

    def constraints(self) -> dict[str, float] | None:
        return None if self.bound is None else {self.devices[0].removesuffix("_ms"): self.bound}


class Curve:
    """Gap ``1 - HV/HV_exact`` of the (feasible) front after each distinct evaluation."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.rows: list[int] = []
        self.gaps: list[float] = []
        self._front = np.zeros((0, problem.loss.shape[1]))
        self._hv = 0.0

    def add(self, row: int) -> None:
        from archlab.search.pareto import hypervolume_of

        p = self.problem
        self.rows.append(row)
        y = p.loss[row]
        if p.feasible[row] and not np.any(np.all(self._front <= y, axis=1)):
            self._front = np.vstack([self._front[~np.all(y <= self._front, axis=1)], y])
            self._hv = hypervolume_of(self._front, p.ref)
        self.gaps.append(1.0 - self._hv / p.hv_exact)

    def gap_at(self, n: int) -> float:
        return self.gaps[min(n, len(self.gaps)) - 1]

    def reach(self, ratio: float) -> int | None:
        """Distinct evaluations until HV >= ``ratio`` x the exact HV (``None``: not reached)."""
        hit = np.flatnonzero(np.asarray(self.gaps) <= 1.0 - ratio + 1e-12)
        return int(hit[0] + 1) if hit.size else None
