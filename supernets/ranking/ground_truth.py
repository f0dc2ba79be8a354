"""Ranking ground truth: architectures of a CPU-trainable space, each trained standalone with
several seeds, as a small table the project commits (``data/ranking_gt_<setup>.csv`` with a
``.json`` sidecar of settings, code version and the seed-to-seed tau).

A *setup* names everything the table depends on: the space, the task, the family and the
training settings. ``build_ground_truth`` trains ``n_archs`` architectures sampled uniformly
(seeded, distinct, extremes *not* forced) with every seed; each standalone run is cached
(``archlab.supernets.ranking.run.standalone_results``), so a killed build resumes.
``load_ground_truth`` reads the table back with the space and the proxy baselines.

Seed ``s`` fixes both the standalone initialisation (slices of a fresh supernet built after
``torch.manual_seed(s)``) and the batch order (``TrainConfig.seed = s``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from archlab.core.io import atomic_write_json, atomic_write_text
from archlab.core.provenance import code_version
from archlab.core.stats import seed_to_seed_tau
from archlab.spaces import Arch, SearchSpace

from ..training.config import TrainConfig
from .run import RankError, sample_archs, standalone_results
from .stats import proxies

PROXIES = ("params", "macs", "width", "depth")  # columns of the table (rank_stats.proxies)


@dataclass(frozen=True)
class GTSetup:
    """Everything a ground-truth table depends on. ``space()`` and ``task(data)`` build the
    space and the task (``data``: a path, or None for data shipped with a dependency);
    ``build(space, task, sharing)`` a fresh supernet; ``train`` the standalone settings
    (``steps``, batch, optimiser; ``seed`` is replaced per seed); ``metric``: the column
    ranked (``accuracy`` higher is better, ``loss`` lower)."""

    name: str
    space: Callable[[], SearchSpace]
    task: Callable[[str | None], Any]
    build: Callable[..., nn.Module]
    train: dict[str, Any]
    n_archs: int = 120
    seeds: tuple[int, ...] = (0, 1, 2)
    arch_seed: int = 0
    metric: str = "accuracy"
    direction: str = "max"
    notes: dict[str, Any] = field(default_factory=dict)

    def config(self) -> TrainConfig:
        return TrainConfig(**self.train)


def _mlp_space() -> SearchSpace:
    from archlab.spaces.library import mlp_space

    return mlp_space("mlp_gt", n_layer=(1, 4), width=(8, 16, 32, 64, 128, 256))


def _mnist(data: str | None) -> Any:
    """MNIST (the IDX files in ``data``) average-pooled 2x2 to 14x14 (a quarter of the first
    layer's cost), flattened; 20 % of each class (seeded) is the validation split."""
    from ..tasks.vision import ImageTask, MNISTTask

    if data is None:
        raise RankError("setup 'mlp_mnist' needs the MNIST folder (e.g. ../shared/data/mnist)")
    full = MNISTTask(data, val_fraction=0.2, seed=0, flatten=False)
    x = torch.cat([full._x["train"], full._x["val"]]) * full.std + full.mean  # back to [0, 1]
    y = torch.cat([full._y["train"], full._y["val"]])
    pooled = torch.nn.functional.avg_pool2d(x, 2)[:, 0].numpy()
    return ImageTask(pooled, y.numpy(), val_fraction=0.2, seed=0, flatten=True, source=f"{data} (2x2 average-pooled)")


def _digits(data: str | None) -> Any:
    from ..tasks.vision import DigitsTask

    return DigitsTask(val_fraction=0.2, seed=0, flatten=True)


def _mlp(space: SearchSpace, task: Any, sharing: str = "entangled", **options: Any) -> nn.Module:
    from ..families.mlp import MLPNet

    kw = task.model_kwargs()
    return MLPNet(space, in_features=kw["in_features"], num_classes=kw["num_classes"], sharing=sharing,
                  sharing_options=options or None)


_TRAIN = {"batch_size": 64, "lr": 2e-3, "weight_decay": 0.0, "schedule": "cosine", "grad_clip": 1.0,
          "device": "auto", "num_threads": 1, "checkpoint_every": 0, "log_every": 0}

SETUPS: dict[str, GTSetup] = {
    "mlp_mnist": GTSetup("mlp_mnist", _mlp_space, _mnist, _mlp, {**_TRAIN, "steps": 400}, n_archs=100),
    "mlp_digits": GTSetup("mlp_digits", _mlp_space, _digits, _mlp, {**_TRAIN, "steps": 300}, n_archs=60),
}


def get_setup(name: str) -> GTSetup:
    try:
        return SETUPS[name]
    except KeyError:
        raise RankError(f"setup: unknown {name!r}; allowed: {', '.join(SETUPS)}") from None


# architectures and proxies -------------------------------------------------------------------
def uniform_archs(space: SearchSpace, k: int, seed: int) -> list[Arch]:
    """``k`` distinct architectures drawn uniformly (seeded), extremes not forced."""
    return sample_archs(space, k, seed, extremes=False)


# the table -----------------------------------------------------------------------------------
def build_ground_truth(setup: str | GTSetup, out_csv: str | os.PathLike[str], work_dir: str | os.PathLike[str],
                       data: str | None = None, n_archs: int | None = None, steps: int | None = None,
                       seeds: Sequence[int] | None = None) -> dict[str, Any]:
    """Train the table and write ``out_csv`` and its ``.json`` sidecar atomically; returns the sidecar."""
    s = get_setup(setup) if isinstance(setup, str) else setup
    space, task = s.space(), s.task(data)
    cfg = s.config()
    steps = int(steps or cfg.steps)
    seeds = tuple(int(x) for x in (seeds or s.seeds))
    if len(seeds) < 2:
        raise RankError(f"seeds: {seeds}; allowed: at least 2 (the seed-to-seed tau needs two)")
    archs = uniform_archs(space, int(n_archs or s.n_archs), s.arch_seed)
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    try:
        per_seed = {seed: standalone_results(archs, lambda: s.build(space, task), task, cfg.replace(seed=seed), steps,
                                             Path(work_dir) / s.name / f"seed{seed}", None, init_seed=seed)
                    for seed in seeds}
    finally:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = s.build(space, task)
    rows = []
    for a in archs:
        row: dict[str, Any] = {"arch": a.key, **proxies(net, a)}
        for seed in seeds:
            m = per_seed[seed][a.key]
            row[f"accuracy_s{seed}"], row[f"loss_s{seed}"] = float(m["accuracy"]), float(m["loss"])
            row[f"seconds_s{seed}"] = round(float(m["seconds"]), 3)
        rows.append(row)
    import pandas as pd

    df = pd.DataFrame(rows)
    ceiling = {}
    for metric in ("accuracy", "loss"):
        ci = seed_to_seed_tau(df[[f"{metric}_s{x}" for x in seeds]].to_numpy())
        ceiling[metric] = ci.to_dict()
    sidecar = {
        "setup": s.name, "space": space.name, "space_size": space.size, "n_archs": len(archs), "seeds": list(seeds),
        "arch_seed": s.arch_seed, "arch_sampling": "uniform per parameter (space.sample), distinct, extremes not forced",
        "standalone_steps": steps, "train": cfg.replace(steps=steps).to_dict(), "task": task.config(),
        "metric": s.metric, "direction": s.direction, "seed_to_seed_tau": ceiling,
        "code_version": code_version(), "build_seconds": round(time.perf_counter() - t0, 1),
        "standalone_seconds_total": round(float(df[[f"seconds_s{x}" for x in seeds]].to_numpy().sum()), 1),
        "torch": torch.__version__, "threads": cfg.num_threads,
    }
    out = Path(out_csv)
    atomic_write_text(out, df.to_csv(index=False, float_format="%.6g"))
    atomic_write_json(out.with_suffix(".json"), sidecar)
    return sidecar


@dataclass
class GroundTruth:
    """A loaded table: ``archs`` (rows), ``scores`` (archs x seeds, the setup's metric, higher
    better after sign), ``proxies`` per name, the ``setup`` and its ``sidecar``."""

    setup: GTSetup
    archs: list[Arch]
    scores: np.ndarray
    proxies: dict[str, np.ndarray]
    sidecar: dict[str, Any]

    @property
    def mean(self) -> np.ndarray:
        """Per-arch mean over seeds (higher is better)."""
        return self.scores.mean(axis=1)


def load_ground_truth(csv: str | os.PathLike[str], metric: str | None = None) -> GroundTruth:
    """Read a table written by ``build_ground_truth`` (CSV plus ``.json`` sidecar)."""
    import pandas as pd

    path = Path(csv)
    side = path.with_suffix(".json")
    if not path.is_file() or not side.is_file():
        raise RankError(f"ground truth: {path} and {side.name} must both exist (build them with scripts/ranking_gt.py)")
    sidecar = json.loads(side.read_text(encoding="utf-8"))
    setup = get_setup(sidecar["setup"])
    metric = metric or setup.metric
    if metric not in ("accuracy", "loss"):
        raise RankError(f"metric: {metric!r}; allowed: accuracy, loss")
    df = pd.read_csv(path)
    space = setup.space()
    archs = [space.validate(json.loads(k)) for k in df["arch"]]
    cols = [f"{metric}_s{s}" for s in sidecar["seeds"]]
    sign = 1.0 if metric == "accuracy" else -1.0
    return GroundTruth(setup, archs, sign * df[cols].to_numpy(dtype=np.float64),
                       {p: df[p].to_numpy(dtype=np.float64) for p in PROXIES}, sidecar)
