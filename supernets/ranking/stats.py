"""Ranking statistics with intervals, and the settings check that keeps comparisons fair.

``ranking_stats`` turns standalone ground truth and supernet scores (one or several supernet
seeds per method) into Kendall tau and Spearman with bootstrap 95 % intervals over the
architectures, paired differences between methods on the same architectures, proxy baselines
(parameters, MACs, width) and the seed-to-seed ceiling of the ground truth
(``archlab.core.stats``). With several supernet seeds a method's tau is the mean over its
seeds of tau(truth, seed's scores); the interval resamples architectures (the seeds' spread
is reported beside it, ``per_seed``). Every score is oriented "higher is better".

``check_settings`` compares the training records of the supernets (settings that change
what a supernet learns, the training budget) and raises ``RankError`` naming the first
difference, unless mismatches are allowed (then they are returned and the report lists
them); differing code versions are returned as notes (recorded, not refused).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from archlab.core.errors import ArchlabError
from archlab.core.stats import bootstrap_ci, seed_to_seed_tau, spearman_value, tau_value

from .zero_cost import synflow


class RankError(ArchlabError):
    """Bad ranking input (too few architectures, unknown sharing mode, untrained supernet)."""


# TrainConfig fields two supernets must share to be compared (strategy, seed and sharing are
# what a comparison varies; device, threads and logging do not change what is learned)
COMPARED_FIELDS = ("batch_size", "lr", "weight_decay", "optimizer", "momentum", "warmup_steps", "schedule",
                   "min_lr_ratio", "grad_clip", "amp", "moe_aux_coef")


def training_record(cfg: Mapping[str, Any], budget: int | None, code: Mapping[str, Any] | None = None,
                    **extra: Any) -> dict[str, Any]:
    """What ``check_settings`` compares for one supernet: its ``TrainConfig`` (as a dict), the
    training ``budget`` (subnet forward-backward passes, or steps where every method takes one
    path per step; None: unknown, listed but not refused) and the ``code`` version
    (``archlab.core.provenance.code_version``)."""
    return {"train": dict(cfg), "budget": None if budget is None else int(budget), "code": dict(code or {}), **extra}


def check_settings(records: Mapping[str, Mapping[str, Any]], allow_mismatch: bool = False) -> list[str]:
    """Every difference between the records (each against the first), as lines; raises
    ``RankError`` with the first settings difference unless ``allow_mismatch`` (code-version
    differences are only listed)."""
    items = list(records.items())
    if not items:
        return []
    ref_name, ref = items[0]
    problems: list[str] = []
    notes: list[str] = []  # code versions: recorded and reported, not refused
    for name, rec in items[1:]:
        for f in COMPARED_FIELDS:
            a, b = ref.get("train", {}).get(f), rec.get("train", {}).get(f)
            if a != b:
                problems.append(f"{name}: train.{f} = {b!r}, {ref_name} has {a!r}")
        if ref.get("budget") is None or rec.get("budget") is None:
            notes.append(f"{name}: training budget unknown for {ref_name if ref.get('budget') is None else name}")
        elif ref.get("budget") != rec.get("budget"):
            problems.append(f"{name}: budget = {rec.get('budget')!r}, {ref_name} has {ref.get('budget')!r}")
        src_a, src_b = ref.get("code", {}).get("source"), rec.get("code", {}).get("source")
        if src_a != src_b:
            notes.append(f"{name}: trained by code version {src_b!r}, {ref_name} by {src_a!r}")
    if problems and not allow_mismatch:
        raise RankError(f"supernets trained by different settings ({problems[0]}; {len(problems)} difference(s)); "
                        f"retrain them alike or allow the mismatch (--allow-mismatch)")
    return problems + notes


def _mean_tau(truth: np.ndarray, *seeds: np.ndarray) -> float:
    return float(np.mean([tau_value(truth, s) for s in seeds]))


def _mean_rho(truth: np.ndarray, *seeds: np.ndarray) -> float:
    return float(np.mean([spearman_value(truth, s) for s in seeds]))


def _as_seeds(name: str, scores: Any, n: int) -> list[np.ndarray]:
    a = np.asarray(scores, dtype=np.float64)
    a = a[None, :] if a.ndim == 1 else a
    if a.ndim != 2 or a.shape[1] != n:
        raise RankError(f"scores of {name!r}: shape {a.shape}; expected ({n},) or (seeds, {n})")
    if not np.all(np.isfinite(a)):
        raise RankError(f"scores of {name!r}: NaN or infinite values")
    return list(a)


def ranking_stats(truth: Sequence[float] | np.ndarray, methods: Mapping[str, Any], proxies: Mapping[str, Sequence[float] | np.ndarray] | None = None,
                  ceiling_scores: Any = None, reference: str | None = None, level: float = 0.95,
                  n_resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Tau and Spearman with intervals per method and proxy, paired differences against
    ``reference`` (a method name) and against the best proxy, and the ceiling.

    ``truth``: standalone score per architecture (higher better, e.g. mean over seeds);
    ``methods``: name -> scores (n,) or (supernet seeds, n); ``proxies``: name -> values
    (n,) (bigger = predicted better); ``ceiling_scores``: (n, standalone seeds) for the
    seed-to-seed tau.
    """
    t = np.asarray(truth, dtype=np.float64)
    n = len(t)
    kw: dict[str, Any] = {"level": level, "n_resamples": n_resamples, "seed": seed}  # keyword arguments of core.stats
    out: dict[str, Any] = {"n_archs": n, "level": level, "methods": {}, "proxies": {}}
    per_method = {m: _as_seeds(m, s, n) for m, s in methods.items()}
    per_proxy = {p: _as_seeds(p, v, n) for p, v in (proxies or {}).items()}
    for group, table in (("methods", per_method), ("proxies", per_proxy)):
        for name, seeds in table.items():
            entry = {"kendall": bootstrap_ci(t, *seeds, statistic=_mean_tau, **kw).to_dict(),
                     "spearman": bootstrap_ci(t, *seeds, statistic=_mean_rho, **kw).to_dict(),
                     "seeds": len(seeds)}
            if len(seeds) > 1:
                entry["per_seed_kendall"] = [tau_value(t, s) for s in seeds]
            out[group][name] = entry
    if ceiling_scores is not None:
        c = seed_to_seed_tau(ceiling_scores, **{**kw, "n_resamples": min(n_resamples, 1000)})
        out["ceiling"] = c.to_dict()
        for entry in out["methods"].values():
            entry["fraction_of_ceiling"] = entry["kendall"]["estimate"] / c.estimate if c.estimate else None
    if reference is not None:
        if reference not in per_method:
            raise RankError(f"reference: {reference!r} is not among the methods; allowed: {', '.join(per_method)}")
        for name, seeds in per_method.items():
            if name != reference:
                out["methods"][name][f"minus_{reference}"] = paired_tau_difference(t, seeds, per_method[reference], **kw)
    for pname, pseeds in per_proxy.items():
        for name, seeds in per_method.items():
            out["methods"][name][f"minus_{pname}"] = paired_tau_difference(t, seeds, pseeds, **kw)
    return out


def paired_tau_difference(truth: np.ndarray, a: Sequence[np.ndarray], b: Sequence[np.ndarray],
                          **kw: Any) -> dict[str, Any]:
    """Interval of mean-over-seeds tau(truth, a) minus that of ``b``, resampling the same
    architectures for both (``excludes_zero``: the difference is resolved)."""
    na = len(a)

    def diff(tt: np.ndarray, *rest: np.ndarray) -> float:
        return _mean_tau(tt, *rest[:na]) - _mean_tau(tt, *rest[na:])

    return bootstrap_ci(truth, *a, *b, statistic=diff, **kw).to_dict()


# proxies ---------------------------------------------------------------------------------
def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of one forward of ``model`` on ``x`` per example, counted on
    ``nn.Linear`` and ``nn.Conv2d`` (the ops that dominate; elementwise ops not counted)."""
    total = [0]

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if isinstance(m, nn.Linear):
            total[0] += m.in_features * m.out_features * (out.numel() // out.shape[-1])
        elif isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
            total[0] += k * out.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total[0] // max(1, x.shape[0])


WIDTH_KEYS = ("width", "ffn", "channels", "d_model", "expand")


def proxies(net: nn.Module, arch: Any) -> dict[str, float]:
    """Proxy baselines of ``arch`` (higher = bigger): parameters and MACs (per example) of the
    extracted subnet, mean of its width-like entries (``width``, ``ffn``, ``channels``,
    ``d_model``, ``expand`` at any level), its depth (number of ``layers``) and the log SynFlow
    score of the subnet with ``net``'s (untrained) weights (``zero_cost.synflow``: a zero-cost
    proxy, higher = predicted better; ``inf`` when it overflows double precision)."""
    sub = net.extract(arch)  # type: ignore[operator]
    x = net.example_input(1)  # type: ignore[operator]
    d = arch.to_dict()
    widths: list[float] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                if k in WIDTH_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool):
                    widths.append(float(v))
                else:
                    walk(v)
        elif isinstance(node, (list, tuple)):
            for v in node:
                walk(v)

    walk(d)
    return {"params": float(sum(p.numel() for p in sub.parameters())), "macs": float(count_macs(sub, x)),
            "width": float(np.mean(widths)) if widths else 0.0, "depth": float(len(d.get("layers", []))),
            "synflow": synflow(sub, x)}
