"""Ranking consistency: does a supernet rank architectures the way training them alone does?

For ``K`` architectures (seeded sample, the largest and smallest included) each one is trained
from scratch as a standalone model: a freshly initialised, seeded entangled supernet's
``extract(arch)``, trained for ``steps`` with the optimizer settings of the run's
``TrainConfig`` (same batches per step as supernet training). Each standalone result is cached
as one JSON file per architecture and seed (``rank/standalone/<digest>-seed<seed>.json``, atomic), so a killed
run resumes where it stopped. Every supernet (one per sharing mode: ``entangled``,
``mos-layer``, ``mos-neuron``, ...) then scores the same architectures with inherited weights,
and ``rank_correlations`` compares the two: Kendall tau-b, Spearman, top-k overlap and the
mean absolute gap. ``write_report`` writes ``rank/report.json`` (its plot: ``archlab.rank_plot``).

A supernet for a sharing mode that is not given already trained is trained here with the run's
``TrainConfig`` (``supernet_steps`` steps, the same for every mode) under
``rank/supernets/<mode>/`` (resumable like any training run); ``train_missing=False`` makes that
a clear error instead.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from archlab.core.io import atomic_write_json
from archlab.core.progress import progress
from archlab.core.provenance import code_version
from archlab.spaces import Arch, SearchSpace

from ..base import Supernet
from ..layers.banks import BANKS
from ..training.evaluation import evaluate_many
from ..training.step import Updater, resolve_device, step_seed
from ..training.trainer import train
from .report import write_report
from .stats import RankError, check_settings, proxies, ranking_stats, training_record

STANDALONE_DIR = "standalone"
SUPERNETS_DIR = "supernets"
# TrainConfig fields that make a standalone result (a cached one is reused only if they match)
STANDALONE_FIELDS = ("batch_size", "lr", "weight_decay", "optimizer", "momentum", "warmup_steps", "schedule",
                     "min_lr_ratio", "grad_clip", "seed", "amp")


# architectures ---------------------------------------------------------------------
def sample_archs(space: SearchSpace, k: int, seed: int = 0, extremes: bool = False,
                 max_tries: int = 100_000) -> list[Arch]:
    """``k`` distinct architectures drawn uniformly (``space.sample``, seeded). With
    ``extremes`` the largest and the smallest come first and ``k - 2`` samples follow (forced
    extremes inflate a rank correlation: ``run_ranking`` reports them apart)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 3:
        raise RankError(f"archs: {k!r}; allowed: an integer >= 3 (a rank correlation needs at least 3 points)")
    out: dict[str, Arch] = {}
    if extremes:
        for a in (space.largest(), space.smallest()):
            out.setdefault(a.key, a)
    rng = np.random.default_rng(int(seed))
    for _ in range(max_tries):
        if len(out) == k:
            return list(out.values())
        a = space.sample(rng)
        out.setdefault(a.key, a)
    raise RankError(f"archs: could not draw {k} distinct architectures from {space.name!r} "
                    f"(found {len(out)}); ask for fewer")


# statistics ------------------------------------------------------------------------
def rank_correlations(standalone: Sequence[float], inherited: Sequence[float], direction: str = "min",
                      top_k: int | None = None) -> dict[str, float]:
    """Agreement of two scorings of the same architectures (same order).

    ``kendall_tau`` (tau-b, ties handled) and ``spearman`` (scipy.stats); ``top_k_overlap``:
    the fraction of the ``top_k`` best by standalone metric that are also among the ``top_k``
    best by inherited metric (best = lowest for ``direction="min"``); ``mean_abs_gap``: mean
    of |inherited - standalone| in the metric's units. Correlations are NaN when one side is
    constant.
    """
    from scipy import stats

    s = np.asarray(standalone, dtype=np.float64)
    h = np.asarray(inherited, dtype=np.float64)
    if s.shape != h.shape or s.ndim != 1 or len(s) < 2:
        raise RankError(f"need two equally long lists of >= 2 metrics, got {s.shape} and {h.shape}")
    if direction not in ("min", "max"):
        raise RankError(f"direction: {direction!r}; allowed: min, max")
    k = default_top_k(len(s)) if top_k is None else int(top_k)
    if not 1 <= k <= len(s):
        raise RankError(f"top_k: {top_k!r}; allowed: 1..{len(s)}")
    sign = 1.0 if direction == "min" else -1.0
    best_s = set(np.argsort(sign * s, kind="stable")[:k].tolist())
    best_h = set(np.argsort(sign * h, kind="stable")[:k].tolist())
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: NaN, documented above
        tau = stats.kendalltau(s, h, variant="b").statistic
        rho = stats.spearmanr(s, h).statistic
    return {
        "kendall_tau": float(tau),
        "spearman": float(rho),
        "top_k_overlap": len(best_s & best_h) / k,
        "mean_abs_gap": float(np.mean(np.abs(h - s))),
        "top_k": k,
    }


def default_top_k(n: int) -> int:
    """A quarter of the architectures, at least 1."""
    return max(1, n // 4)


# standalone training -------------------------------------------------------------------
def standalone_settings(cfg: Any, steps: int, eval_batches: int | None) -> dict[str, Any]:
    """What a cached standalone result depends on (besides the architecture)."""
    d = cfg.to_dict()
    return {"steps": int(steps), "eval_batches": eval_batches, **{k: d[k] for k in STANDALONE_FIELDS}}


def train_standalone(model: nn.Module, task: Any, cfg: Any, steps: int, eval_batches: int | None = None) -> dict[str, float]:
    """Train ``model`` (an ordinary module) alone on ``task`` for ``steps`` with the optimizer,
    schedule, clipping and batches of ``cfg`` (a ``TrainConfig``), through the supernet
    trainer's step (``archlab.supernets.training.step.Updater``); returns ``task.evaluate``
    on the validation split (``eval_batches`` batches; None: all) plus ``train_loss`` (mean of
    the last 10 steps) and ``seconds``."""
    cfg = cfg.replace(steps=int(steps))
    device = resolve_device(cfg.device)
    model.to(device)
    upd = Updater(model, cfg, device)  # the supernet trainer's step: same batches, AMP, clipping, skips
    torch.manual_seed(step_seed(cfg.seed, 0, 0, 3))
    t0 = time.perf_counter()
    losses: list[float] = []
    model.train()
    for step in range(cfg.steps):
        x, y = upd.batch(task, step)
        upd.zero_grad()
        with upd.autocast():
            loss = task.loss(model(x), y)
        upd.backward(loss, f"at standalone step {step + 1}")
        upd.apply(step, upd.clip())
        losses.append(float(loss.detach()))
    metrics = dict(task.evaluate(model, "val", max_batches=eval_batches))
    metrics["train_loss"] = float(np.mean(losses[-10:]))
    metrics["seconds"] = time.perf_counter() - t0
    return metrics


def standalone_results(
    archs: Sequence[Arch],
    build_fresh: Callable[[], nn.Module],
    task: Any,
    cfg: Any,
    steps: int,
    cache_dir: str | os.PathLike[str],
    eval_batches: int | None = None,
    init_seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Standalone metrics per arch key, from the cache where present, else trained now.

    The standalone model of an arch is ``build_fresh().extract(arch)`` built right after
    ``torch.manual_seed(init_seed)`` (so every arch starts from slices of the same fresh
    weights). Each result is written to ``cache_dir/<digest>.json`` as soon as it is done; a
    cached file is reused only when its settings match.
    """
    cache = Path(cache_dir)
    settings = {**standalone_settings(cfg, steps, eval_batches), "init_seed": int(init_seed)}
    out: dict[str, dict[str, Any]] = {}
    todo: list[Arch] = []

    def path(a: Arch) -> Path:
        return cache / f"{a.digest}-seed{int(cfg.seed)}.json"

    for a in archs:
        hit = _read_cached(path(a), a, settings)
        if hit is not None:
            out[a.key] = hit
        else:
            todo.append(a)
    bar = progress(total=len(archs), initial=len(archs) - len(todo), desc="standalone", unit="arch")
    with bar:
        for a in todo:
            torch.manual_seed(int(init_seed))
            fresh = build_fresh()
            model = fresh.extract(a)  # type: ignore[operator]
            del fresh
            metrics = train_standalone(model, task, cfg, steps, eval_batches)
            atomic_write_json(path(a), {"arch": a.key, "settings": settings, "metrics": metrics})
            out[a.key] = metrics
            bar.update(1)
    return {a.key: out[a.key] for a in archs}


def _read_cached(path: Path, arch: Arch, settings: Mapping[str, Any]) -> dict[str, Any] | None:
    import json

    if not path.is_file():
        return None
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, OSError, UnicodeDecodeError):
        return None  # unreadable: train again (writes are atomic, so this is someone else's file)
    if not isinstance(body, dict) or body.get("arch") != arch.key or body.get("settings") != json.loads(
        json.dumps(dict(settings))
    ):
        return None
    metrics = body.get("metrics")
    return metrics if isinstance(metrics, dict) else None


# supernets ---------------------------------------------------------------------------
def trained_supernet(
    sharing: str,
    build: Callable[[str], Supernet],
    task: Any,
    cfg: Any,
    out_dir: str | os.PathLike[str],
    steps: int | None = None,
) -> Supernet:
    """The supernet of ``sharing`` trained with ``cfg`` (``steps`` overrides ``cfg.steps``) in
    ``out_dir`` (resumes a killed run; an already finished one is loaded, not retrained)."""
    net = build(sharing)
    if getattr(net, "sharing", sharing) != sharing:
        raise RankError(f"building a {sharing!r} supernet gave one with sharing={net.sharing!r}")
    train(net, task, cfg.replace(steps=int(steps or cfg.steps)), out_dir)
    return net


def check_sharing(modes: Iterable[str]) -> list[str]:
    """The sharing modes, validated against the registered weight banks (order kept, no repeats)."""
    out: list[str] = []
    for m in modes:
        m = str(m).strip()
        if m not in BANKS:
            raise RankError(f"sharing: unknown mode {m!r}; allowed: {', '.join(sorted(BANKS))}")
        if m not in out:
            out.append(m)
    if not out:
        raise RankError(f"sharing: give at least one mode; allowed: {', '.join(sorted(BANKS))}")
    return out


# the whole comparison ---------------------------------------------------------------------
def run_ranking(
    out_dir: str | os.PathLike[str],
    space: SearchSpace,
    task: Any,
    cfg: Any,
    build: Callable[[str], Supernet],
    sharing: Sequence[str] = ("entangled",),
    n_archs: int = 10,
    steps: int | None = None,
    supernet_steps: int | None = None,
    seed: int = 0,
    eval_batches: int | None = None,
    top_k: int | None = None,
    supernets: Mapping[str, Supernet] | None = None,
    train_missing: bool = True,
    sources: Mapping[str, Mapping[str, Any]] | None = None,
    extremes: bool = False,
    standalone_seeds: int = 1,
    allow_mismatch: bool = False,
    n_resamples: int = 2000,
) -> dict[str, Any]:
    """Rank ``n_archs`` architectures of ``space`` standalone and with every supernet; write
    ``out_dir/report.json`` and ``out_dir/report.html``; return the report.

    ``build(sharing)`` makes a fresh supernet; ``cfg`` is the ``TrainConfig`` of the run;
    ``steps`` the standalone budget (default ``cfg.steps``); ``supernet_steps`` the budget of
    supernets trained here (default ``cfg.steps``); ``supernets`` already trained ones by mode
    (used as given; ``sources[mode]`` describes each: ``{"source": path, "supernet_steps": n,
    "train": its TrainConfig dict, "code": its code version}``). ``seed`` picks the
    architectures (uniformly, extremes not forced) and the standalone init; ``extremes`` adds
    the largest and smallest, reported apart (``with_extremes``); ``standalone_seeds`` >= 2
    trains every architecture that often (seeds ``seed``, ``seed + 1``, ...) and reports the
    seed-to-seed tau (the ceiling). The supernets' training records must agree
    (``rank_stats.check_settings``) unless ``allow_mismatch``. ``report["stats"]`` holds tau
    and Spearman with bootstrap intervals, paired differences against the first mode and the
    proxies (parameters, MACs, width, and SynFlow on the fresh supernet's weights when its
    scores are finite).
    """
    modes = check_sharing(sharing)
    out = Path(out_dir)
    archs = sample_archs(space, n_archs, seed)
    extra = [a for a in (space.largest(), space.smallest()) if extremes and a not in archs]
    everything = archs + list(dict.fromkeys(extra))
    steps = int(steps or cfg.steps)
    if steps < 1:
        raise RankError(f"steps: {steps}; allowed: an integer >= 1")
    if isinstance(standalone_seeds, bool) or not isinstance(standalone_seeds, int) or standalone_seeds < 1:
        raise RankError(f"standalone_seeds: {standalone_seeds!r}; allowed: an integer >= 1")
    given = dict(supernets or {})
    missing = [m for m in modes if m not in given]
    if missing and not train_missing:
        raise RankError(f"no trained {missing[0]!r} supernet; train one first or allow training here")
    nets, records, src = {}, {}, {}
    for mode in modes:
        if mode in given:
            info = dict((sources or {}).get(mode, {}))
            nets[mode], src[mode] = given[mode], info.get("source", "given")
            budget = info.get("supernet_steps")
            records[mode] = training_record(info.get("train", cfg.to_dict()), budget, info.get("code"))
        else:
            budget = int(supernet_steps or cfg.steps)
            folder = out / SUPERNETS_DIR / mode
            nets[mode] = trained_supernet(mode, build, task, cfg, folder, budget)
            src[mode] = f"trained here ({SUPERNETS_DIR}/{mode})"
            saved = _saved_config(folder)
            records[mode] = training_record(saved.get("train", cfg.to_dict()), saved.get("steps", budget),
                                            saved.get("code", code_version()))
    mismatches = check_settings(records, allow_mismatch)
    per_seed = [standalone_results(everything, lambda: build("entangled"), task, cfg.replace(seed=seed + i), steps,
                                   out / STANDALONE_DIR, eval_batches, init_seed=seed + i)
                for i in range(standalone_seeds)]
    metric, direction = task.metric, task.metric_direction
    sign = 1.0 if direction == "max" else -1.0
    table = np.array([[task.metric_value(r[a.key]) for r in per_seed] for a in everything])  # (archs, seeds)
    s_values = table.mean(axis=1).tolist()
    n = len(archs)
    report: dict[str, Any] = {
        "archs": [a.key for a in archs],
        "extremes": [a.key for a in everything[n:]],
        "standalone": {a.key: v for a, v in zip(everything, s_values)},
        "standalone_per_seed": {a.key: row.tolist() for a, row in zip(everything, table)},
        "supernets": {},
        "metric": metric,
        "direction": direction,
        "settings": {"n_archs": n, "seed": int(seed), "standalone_steps": steps, "standalone_seeds": standalone_seeds,
                     "eval_batches": eval_batches, "train": cfg.to_dict(), "extremes": bool(extremes),
                     "code_version": code_version()},
        "settings_mismatches": mismatches,
    }
    inherited = {}
    for mode in modes:
        results = evaluate_many(nets[mode], task, everything, max_batches=eval_batches)
        h_values = [task.metric_value(r) for r in results]
        inherited[mode] = np.array(h_values)
        report["supernets"][mode] = {
            "inherited": {a.key: v for a, v in zip(everything, h_values)},
            **rank_correlations(s_values[:n], h_values[:n], direction, top_k),
            "source": src[mode],
            "supernet_steps": records[mode]["budget"],
            "record": records[mode],
        }
    torch.manual_seed(seed)
    fresh = build("entangled")
    prox = [proxies(fresh, a) for a in everything]
    prox_cols = {p: np.array([x[p] for x in prox]) for p in ("params", "macs", "width", "synflow")}
    if not np.isfinite(prox_cols["synflow"]).all():  # a score beyond double precision: no baseline
        del prox_cols["synflow"]
    truth = sign * np.array(s_values)

    def stats(k: int) -> dict[str, Any]:
        return ranking_stats(truth[:k], {m: sign * v[:k] for m, v in inherited.items()},
                             proxies={p: v[:k] for p, v in prox_cols.items()},
                             ceiling_scores=sign * table[:k] if standalone_seeds > 1 else None,
                             reference=modes[0] if len(modes) > 1 else None, n_resamples=n_resamples, seed=seed)

    report["stats"] = stats(n)
    if len(everything) > n:
        report["with_extremes"] = stats(len(everything))
    write_report(report, out, space)
    return report


def _saved_config(folder: Path) -> dict[str, Any]:
    import json

    path = folder / "config.json"
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


__all__ = [
    "RankError",
    "check_sharing",
    "default_top_k",
    "rank_correlations",
    "run_ranking",
    "sample_archs",
    "standalone_results",
    "train_standalone",
    "trained_supernet",
    "write_report",
]
