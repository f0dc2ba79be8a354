"""Supernet training: ``train(net, task, TrainConfig(...), out_dir)``, resumable.

Each step draws the step's architectures with the strategy (from an RNG seeded by
``(seed, step)``, identical on every DDP rank), one batch per rank (RNG seeded by
``(seed, step, rank)``), accumulates the gradients of every subnet, clips and steps. A
checkpoint (``out_dir/ckpt.pt``, atomic) is written every ``checkpoint_every`` steps; started
again with the same arguments, ``train`` continues from it and on CPU ends with the same
weights as an uninterrupted run. At the end ``model.safetensors`` and ``config.json`` hold
the final weights. Metrics are appended to ``out_dir/metrics.jsonl``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from archlab.core.errors import ArchlabError
from archlab.core.io import atomic_write_text
from archlab.core.progress import progress
from archlab.spaces import Arch

from ..layers.mos import mixing_log
from ..layers.routing_metrics import current_metrics, flat_metrics
from ..routers import set_progress
from ..tasks.base import Task
from . import checkpoint as ckpt
from . import distributed as dist_util
from . import runguard
from .config import ConfigError, TrainConfig
from .evaluation import evaluate, evaluate_many
from .step import Updater, _Step, resolve_device, step_seed
from .strategies import make_strategy
from .weights import CKPT_NAME, CONFIG_NAME, WEIGHTS_NAME, load_weights, save_weights

if TYPE_CHECKING:
    from ..base import Supernet

METRICS_NAME = "metrics.jsonl"

StepCallback = Callable[[int, list[Arch], dict[str, float]], None]


@dataclass
class TrainResult:
    """What ``train`` did: ``steps`` completed in all, ``resumed_from`` (0: fresh), the last
    logged ``loss``, the final evaluation ``metrics`` ({"largest": .., "smallest": ..}),
    wall time ``seconds`` of this call, and ``out_dir``."""

    steps: int
    resumed_from: int
    loss: float | None
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    out_dir: Path | None = None


def _log(path: Path, record: dict[str, Any]) -> None:
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
    except OSError as exc:  # a full disk: say which file (a resume trims a cut last line)
        raise OSError(exc.errno, f"cannot append to {path}: {exc.strerror or exc}") from exc


def _trim_log(path: Path, step: int) -> None:
    """Keep only records up to ``step`` (a resumed run re-logs what came after)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill
        if int(rec.get("step", 0)) <= step:
            keep.append(line)
    atomic_write_text(path, "".join(k + "\n" for k in keep))


def train(net: Supernet, task: Task, config: TrainConfig | None = None,
          out_dir: str | os.PathLike[str] | None = None, *, resume: bool = True,
          on_step: StepCallback | None = None, force_config: bool = False) -> TrainResult:
    """Train supernet ``net`` on ``task``; see the module docstring.

    ``out_dir`` (None: no files) receives ``ckpt.pt``, ``metrics.jsonl``,
    ``model.safetensors`` and ``config.json``. With ``resume`` an existing checkpoint there
    is continued (its model must have the same config: family, space, sharing). Under
    ``torchrun`` training is data-parallel (DDP); only rank 0 writes. ``on_step(step, archs,
    logged)`` is called after every step on every rank. ``net`` ends on the chosen device with
    the trained weights.

    The writing process holds a lock on ``out_dir`` (``runguard.RunLock``): a second trainer
    there fails at once with ``RunLockedError``. A checkpoint trained with other settings is
    refused (``ConfigMismatchError``) unless ``force_config``. A step whose gradients hold
    NaN/inf is skipped (see ``TrainConfig.max_nonfinite_steps``).
    """
    cfg = config or TrainConfig()
    if not isinstance(cfg, TrainConfig):
        raise ConfigError(f"config: expected a TrainConfig, got {type(cfg).__name__}")
    if not isinstance(task, Task):
        raise ArchlabError(f"task: expected a Task, got {type(task).__name__}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")) if world > 1 else 0)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    threads = torch.get_num_threads()
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    info = dist_util.setup(device.type)
    lock = runguard.RunLock(out_dir) if out_dir is not None and info.is_main else None
    try:
        if lock is not None:
            lock.acquire()
        trainer = _Trainer(net, task, cfg, out_dir, device, info, on_step)
        trainer.force_config = force_config
        try:
            return trainer.run(resume)
        finally:
            release = getattr(trainer.optimizer, "release", None)
            if release is not None:
                release()  # the returned net serves ordinary slices (ordinary .grad) again
    finally:
        if lock is not None:
            lock.release()
        dist_util.teardown(info)
        torch.set_num_threads(threads)


class _Trainer:
    def __init__(self, net: Supernet, task: Task, cfg: TrainConfig, out_dir: Any, device: torch.device,
                 info: dist_util.DistInfo, on_step: StepCallback | None) -> None:
        self.net, self.task, self.cfg, self.device, self.info, self.on_step = net, task, cfg, device, info, on_step
        self.out = Path(out_dir) if out_dir is not None else None
        self.writes = self.out is not None and info.is_main
        net.to(device)
        self.strategy = make_strategy(cfg.strategy, net.space, cfg.strategy_options)
        # DDP reads .grad: slice gradients go through it there (the reference optimizer)
        self.updater = Updater(net, cfg, device, leaf_views=not info.enabled, rank=info.rank, is_main=info.is_main)
        self.optimizer, self.scheduler, self.scaler = self.updater.optimizer, self.updater.scheduler, self.updater.scaler
        self.model: nn.Module = net
        self.force_config = False
        if info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            # subnets leave parameters unused (deeper layers, other experts): let DDP find them
            self.model = DistributedDataParallel(
                net, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
            )

    # checkpoints -------------------------------------------------------------------
    def _resume(self) -> int:
        assert self.out is not None
        path = self.out / CKPT_NAME
        if not path.exists():
            return 0
        body = ckpt.read_checkpoint(path)
        missing = [k for k in ("optimizer", "scheduler", "step", "rng") if k not in body]
        if missing or not isinstance(body["step"], int) or body["step"] < 0:
            why = f"no {missing[0]!r} entry" if missing else f"step {body['step']!r} is not a count of steps"
            raise ckpt.CheckpointError(f"{path}: not a training checkpoint ({why})")
        ckpt.load_model_state(self.net, body, str(path))
        try:
            if not self.force_config and isinstance(body.get("train_config"), str):
                runguard.check_resume_config(json.loads(body["train_config"]), self.cfg.to_dict(), str(path))
            self.updater.skipped = int(body.get("skipped_steps", 0))
            self.optimizer.load_state_dict(body["optimizer"])
            self.scheduler.load_state_dict(body["scheduler"])
            if self.scaler is not None and body.get("scaler"):
                self.scaler.load_state_dict(body["scaler"])
            self.strategy.load_state_dict(body.get("strategy") or {})
            if self.info.is_main:
                ckpt.set_rng_state(body["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as exc:
            raise ckpt.CheckpointError(f"{path}: damaged training state ({type(exc).__name__}: "
                                       f"{' '.join(str(exc).split())[:160]})") from None
        step = int(body["step"])
        if not self.info.is_main:
            torch.manual_seed(step_seed(self.cfg.seed, step, self.info.rank, 3))
        return step

    def _save(self, step: int) -> None:
        if not self.writes:
            return
        assert self.out is not None
        ckpt.save_checkpoint(self.out / CKPT_NAME, {
            "net_config": self.net.config(),
            "model": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "step": step,
            "rng": ckpt.rng_state(),
            "strategy": self.strategy.state_dict(),
            "train_config": json.dumps(self.cfg.to_dict()),
            "skipped_steps": self.updater.skipped,
        })

    # evaluation -------------------------------------------------------------------
    def _evaluate(self) -> dict[str, Any]:
        space = self.net.space
        names = ("largest", "smallest")
        results = evaluate_many(self.net, self.task, [space.largest(), space.smallest()],
                                max_batches=self.cfg.eval_batches)
        return dict(zip(names, results))

    # loop -------------------------------------------------------------------------
    def run(self, resume: bool) -> TrainResult:
        cfg, net, info = self.cfg, self.net, self.info
        start = 0
        if self.out is not None and resume:
            start = self._resume()
        if start >= cfg.steps and self._has_final():
            saved = json.loads((self.out / CONFIG_NAME).read_text(encoding="utf-8"))  # type: ignore[operator]
            return TrainResult(steps=start, resumed_from=start, loss=None, metrics=saved.get("metrics", {}),
                               out_dir=self.out)
        if start == 0:
            torch.manual_seed(step_seed(cfg.seed, 0, info.rank, 3))
        metrics_path = self.out / METRICS_NAME if self.out is not None else None
        if self.writes:
            assert self.out is not None and metrics_path is not None
            self.out.mkdir(parents=True, exist_ok=True)
            _trim_log(metrics_path, start)
        t0 = time.perf_counter()
        last_loss: float | None = None
        window: list[float] = []
        t_window = time.perf_counter()
        net.train()
        bar = progress(total=cfg.steps, initial=min(start, cfg.steps), desc=f"train {cfg.strategy}", unit="step",
                       disable=None if info.is_main else True)
        with bar:
            for step in range(start, cfg.steps):
                logged, archs = self._one_step(step)
                done = step + 1
                window.append(logged["loss"])
                last_loss = logged["loss"]
                if self.on_step is not None:
                    self.on_step(done, archs, logged)
                bar.update(1)
                bar.set_postfix(loss=f"{logged['loss']:.4f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}")
                if cfg.log_every and (done % cfg.log_every == 0 or done == cfg.steps):
                    now = time.perf_counter()
                    record = {"step": done, "loss": float(np.mean(window)), "lr": self.scheduler.get_last_lr()[0],
                              "steps_per_s": len(window) / max(now - t_window, 1e-9),
                              "archs": [a.digest for a in archs],
                              **{k: v for k, v in logged.items() if k != "loss"}, **mixing_log(net)}
                    window, t_window = [], now
                    if self.writes and metrics_path is not None:
                        _log(metrics_path, record)
                if cfg.eval_every and done % cfg.eval_every == 0 and done != cfg.steps:
                    self._eval_and_log(done, metrics_path)
                if cfg.checkpoint_every and done % cfg.checkpoint_every == 0:
                    self._save(done)
        final = self._eval_and_log(max(start, cfg.steps), metrics_path)
        if start < cfg.steps:
            self._save(cfg.steps)
        if self.writes and self.out is not None:
            from archlab.core.provenance import code_version

            save_weights(net, self.out, {"steps": cfg.steps, "train": cfg.to_dict(), "task": self.task.config(),
                                         "metrics": final, "code": code_version()})
        dist_util.barrier(info)
        return TrainResult(steps=max(start, cfg.steps), resumed_from=start, loss=last_loss, metrics=final,
                           seconds=time.perf_counter() - t0, out_dir=self.out)

    def _has_final(self) -> bool:
        return self.out is not None and (self.out / WEIGHTS_NAME).is_file()

    def _eval_and_log(self, step: int, metrics_path: Path | None) -> dict[str, Any]:
        if not self.info.is_main:
            return {}
        result = self._evaluate()
        self.net.train()
        if self.writes and metrics_path is not None:
            _log(metrics_path, {"step": step, "eval": result})
        return result

    def _one_step(self, step: int) -> tuple[dict[str, float], list[Arch]]:
        cfg, info, strategy, upd = self.cfg, self.info, self.strategy, self.updater
        strategy.on_step_start(step, cfg.steps)
        x, y = upd.batch(self.task, step, strategy.batch)
        archs = strategy.archs(np.random.default_rng(step_seed(cfg.seed, step, 1)))
        dist_util.check_same(info, "|".join(a.key for a in archs), self.device)
        upd.zero_grad()
        set_progress(self.net, step / max(cfg.steps, 1))  # routers with a training schedule (random_grow)
        aux_coef = cfg.moe_aux_coef if getattr(self.net, "has_moe", False) else 0.0
        ctx = _Step(self.net, self.model, self.task, x, y, upd.autocast, upd.scaler, aux_coef)
        logged = self.strategy.step(ctx, archs)
        if ctx.aux_losses:
            logged["moe_aux_loss"] = float(np.mean(ctx.aux_losses))
        if getattr(self.net, "has_moe", False):  # routing of the step's last subnet (archlab.supernets.layers.routing_metrics)
            logged.update({k: v for k, v in flat_metrics(current_metrics(self.net)).items() if ".layers." not in k})
        logged["grad_norm"] = upd.clip()
        if math.isfinite(logged["grad_norm"]):
            strategy.feedback(archs, logged)  # (a step with NaN/inf gradients teaches no strategy)
        upd.apply(step, logged["grad_norm"])
        logged["skipped_steps"] = upd.skipped
        if not math.isfinite(logged["loss"]):  # pragma: no cover - caught in backward
            raise ArchlabError(f"training diverged at step {step + 1}")
        return logged, archs

__all__ = [
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "evaluate_many",
    "load_weights",
    "save_weights",
    "step_seed",
    "train",
]
