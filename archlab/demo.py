"""The end-to-end demo behind ``archlab demo``: every stage of a NAS run on the bundled
digits experiment (scikit-learn's 8x8 digits, no download).

space -> train the supernet -> profile latency -> fit a latency predictor -> multi-objective
search -> Pareto front -> export the chosen subnet as a plain PyTorch module.

Each stage goes through the same public API the command line uses and reads the previous
stage's files, so a killed demo re-run with the same command continues where it stopped
(training resumes from its checkpoint, profiling skips measured architectures, the search
continues its study).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXPERIMENT = "digits_cnn"

#: above these, the demo warns that latency figures are not to be trusted (percent)
NOISE_FLOOR_WARN_PCT = 10.0
MAPE_WARN_PCT = 15.0

#: budgets of the full demo and of ``--quick`` (a smoke test of every stage)
BUDGETS: dict[str, dict[str, int]] = {
    "full": {"steps": 200, "profile_n": 120, "repeats": 20, "warmup": 5, "trials": 120},
    "quick": {"steps": 30, "profile_n": 24, "repeats": 5, "warmup": 2, "trials": 16},
}


@dataclasses.dataclass
class DemoResult:
    """Where the demo left its files and what it found."""

    run_dir: Path
    storage: str
    study_name: str
    largest_accuracy: float
    smallest_accuracy: float
    noise_floor_pct: float
    predictor_mape: float
    n_trials: int
    front: Any  # pandas DataFrame: the feasible Pareto front
    hypervolume: float
    chosen_trial: int
    export_dir: Path
    exported_accuracy: float
    seconds: float
    #: wall seconds of each stage ("space", "train", "profile", "predictor", "search", "export")
    stage_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    #: CPU seconds (user + system) of this process, all threads, in all and per stage
    cpu_seconds: float = 0.0
    stage_cpu_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)


def busy_warning(load: float, cores: int) -> str | None:
    """One line when the machine's 1-minute load average exceeds its cores (the demo then
    runs several times slower than its few minutes and its latencies are noisy), else None."""
    if load <= cores:
        return None
    return (f"warning: this machine is busy (load average {load:.1f} on {cores} cores): the demo will run "
            "slower and its latency figures will be noisy; for trustworthy numbers run it on a quiet machine")


def trust_warnings(noise_floor_pct: float, mape_pct: float) -> list[str]:
    """One line per latency figure too noisy to trust, each saying what to do (empty when
    the noise floor is at most ``NOISE_FLOOR_WARN_PCT`` and the predictor's held-out MAPE at
    most ``MAPE_WARN_PCT``; a figure that is not a number is not trusted either)."""
    out = []
    if not noise_floor_pct <= NOISE_FLOOR_WARN_PCT:
        out.append(f"warning: latency noise floor {noise_floor_pct:.1f}% (> {NOISE_FLOOR_WARN_PCT:.0f}%): this "
                   "machine is busy, so latencies are not to be trusted; stop other work and re-run "
                   "`archlab profile` (or the demo with a fresh --out)")
    if not mape_pct <= MAPE_WARN_PCT:
        out.append(f"warning: latency predictor MAPE {mape_pct:.1f}% (> {MAPE_WARN_PCT:.0f}%): its latencies "
                   "are not to be trusted; profile more architectures on a quiet machine (`archlab profile "
                   "--n 300`) and refit (`archlab predictor fit`)")
    return out


def _choose(front: Any) -> Any:
    """The front's knee-ish pick: the fastest architecture within 1 point of the best accuracy."""
    best = float(front["accuracy"].max())
    near = front[front["accuracy"] >= best - 0.01]
    return near.sort_values("latency_ms").iloc[0]


def run_demo(out: str | Path = "runs", quick: bool = False, log: Callable[[str], None] = print) -> DemoResult:
    """Run every stage into ``out/digits_cnn``; ``log`` receives one line per step."""
    from archlab.core.layout import RunLayout
    from archlab.experiment import load_experiment
    from archlab.export import export_trial
    from archlab.predictors import LatencyPredictor, load_measurements
    from archlab.predictors.profiling import ProfileSettings, noise_report, profile
    from archlab.search import hypervolume, load_trials, pareto_front, run_search
    from archlab.supernets.export import load_subnet
    from archlab.supernets.training.evaluation import evaluate

    t0 = time.perf_counter()
    cpu0 = _cpu_seconds()
    stages: dict[str, float] = {}
    stage_cpu: dict[str, float] = {}
    mark = [t0, cpu0]

    def lap(stage: str) -> None:
        now, cpu_now = time.perf_counter(), _cpu_seconds()
        stages[stage], stage_cpu[stage] = now - mark[0], cpu_now - mark[1]
        mark[:] = [now, cpu_now]

    b = BUDGETS["quick" if quick else "full"]
    busy = busy_warning(os.getloadavg()[0], os.cpu_count() or 1) if hasattr(os, "getloadavg") else None
    if busy:
        log(busy)
    exp = dataclasses.replace(load_experiment(EXPERIMENT), runs_dir=Path(out))
    run_dir, layout = exp.run_dir, exp.layout
    space = exp.space

    log(f"[1/6] space {space.name}: {space.size:,} architectures, {space.encoding_size} encoding features")
    log(f"      smallest: {space.summary(space.smallest())}")
    log(f"      largest:  {space.summary(space.largest())}")
    lap("space")

    log(f"[2/6] training the {exp.family} supernet ({exp.train.strategy} rule, {b['steps']} steps) -> {exp.supernet_dir()}")
    result = exp.train_supernet(steps=b["steps"])
    resumed = f", resumed from step {result.resumed_from}" if result.resumed_from else ""
    log(f"      {result.steps} steps in {result.seconds:.1f} s{resumed}")
    net = exp.load_supernet()
    acc = {k: evaluate(net, exp.task, a)["val_accuracy"] for k, a in
           (("largest", space.largest()), ("smallest", space.smallest()))}
    log(f"      inherited validation accuracy: largest {acc['largest']:.1%}, smallest {acc['smallest']:.1%}")
    lap("train")

    settings = ProfileSettings(n=b["profile_n"], repeats=b["repeats"], warmup=b["warmup"], anchor_every=20)
    log(f"[3/6] profiling {settings.n} architectures on {settings.target} -> {layout.latency_table}")
    frame = profile(exp.build_supernet(), run_dir, settings=settings)
    noise = noise_report(frame)
    rows = frame[frame["kind"] == "arch"]
    log(f"      latency {rows['latency_ms'].min():.3f}..{rows['latency_ms'].max():.3f} ms, "
        f"noise floor {noise['noise_floor_pct']:.2f}%")
    lap("profile")

    m = load_measurements(layout.latency_table, where={"kind": "arch", "target": settings.target})
    predictor = LatencyPredictor(m.space, model="gbm", seed=0).fit(m.X, m.y, holdout=0.25, layer_ms=m.layer_ms)
    predictor.save(layout.predictor("latency"))
    scores = predictor.scores or {}
    log(f"[4/6] latency predictor (gbm) -> {layout.predictor('latency')}: held-out MAPE "
        f"{scores.get('mape', float('nan')):.2f}%, Kendall tau {scores.get('kendall_tau', float('nan')):.3f}")
    warned = trust_warnings(float(noise["noise_floor_pct"]), float(scores.get("mape", float("nan"))))
    for line in warned:
        log(line)
    lap("predictor")

    storage = RunLayout(run_dir.resolve()).storage_url
    log(f"[5/6] search: accuracy (max, inherited weights) vs predicted latency (min), nsga2, "
        f"{b['trials']} trials -> {layout.study_db}")
    study = run_search(space, {"accuracy": ("max", "inherited"), "latency_ms": ("min", "predicted_latency")},
                       n_trials=b["trials"], sampler="nsga2", seed=0, storage=storage, study_name=exp.name,
                       sources=exp.metric_sources(experiment_file=EXPERIMENT), run_dir=run_dir, show_progress=False)
    trials = load_trials(storage, study.study_name)
    front = pareto_front(trials).sort_values("latency_ms")
    hv = hypervolume(trials)
    n_done = int((trials["state"] == "COMPLETE").sum())
    log(f"      {n_done} complete trials; Pareto front of {len(front)}, hypervolume {hv:.4f}")
    for _, row in front.iterrows():
        log(f"      #{int(row['number']):<4} accuracy {row['accuracy']:.1%}  latency {row['latency_ms']:.3f} ms")
    lap("search")

    pick = _choose(front)
    number = int(pick["number"])
    export_dir = layout.exported_trial(number)
    export_trial(storage, study.study_name, number, export_dir, exp)
    sub = load_subnet(export_dir, preprocess=False)  # the task's batches are standardised already
    exported_acc = exp.task.metric_value(exp.task.evaluate(sub))
    log(f"[6/6] exported trial #{number} (accuracy {pick['accuracy']:.1%}, {pick['latency_ms']:.3f} ms) -> {export_dir}")
    log(f"      archlab.load_subnet({str(export_dir)!r}) is a plain nn.Module: validation accuracy "
        f"{exported_acc:.1%} on its own")
    log(f"      browse the study: archlab app {Path(out)}")
    lap("export")
    seconds = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0
    log(f"done in {seconds:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in stages.items())}; CPU {cpu:.0f} s); "
        "re-running the same command continues every stage")
    for line in warned:
        log(line)
    return DemoResult(run_dir=run_dir, storage=storage, study_name=study.study_name,
                      largest_accuracy=acc["largest"], smallest_accuracy=acc["smallest"],
                      noise_floor_pct=float(noise["noise_floor_pct"]), predictor_mape=float(scores.get("mape", float("nan"))),
                      n_trials=n_done, front=front, hypervolume=float(hv), chosen_trial=number,
                      export_dir=export_dir, exported_accuracy=exported_acc, seconds=seconds,
                      stage_seconds=stages, cpu_seconds=cpu, stage_cpu_seconds=stage_cpu, warnings=warned)


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all threads)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
