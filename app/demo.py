"""Synthetic archlab studies for demos, tests and the dashboard benchmark.

``make_demo_study`` writes a study that follows the study contract (``archlab`` study attrs,
``arch``/``metrics`` trial attrs, ``set_constraint``) with made-up but plausible metrics of a
small transformer LM space, without training anything. The dashboard itself never calls it
(the app only reads storages); tests and demos use it. ``demo_trials`` gives the same trials
without writing them (``bench/app.py`` writes 50,000 of them in bulk: Optuna's ``add_trials``
checks each new parameter against every earlier trial, so it slows down as a study grows).
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import numpy as np

from archlab.spaces import library

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial


class _Objective(TypedDict):
    name: str
    direction: Literal["minimize", "maximize"]


OBJECTIVES: tuple[_Objective, ...] = (
    {"name": "error", "direction": "minimize"},
    {"name": "latency_ms", "direction": "minimize"},
    {"name": "params_m", "direction": "minimize"},
)


def demo_space() -> Any:
    """The space of demo studies: a transformer LM with 1..6 layers."""
    return library.transformer_lm_space(
        "demo_lm", n_layer=(1, 6), d_model=(64, 96, 128, 192), n_head=(2, 4, 8), ffn=(128, 256, 512, 1024)
    )


def _metrics(arch: Any, rng: np.random.Generator) -> dict[str, float]:
    d = arch["d_model"]
    layers = arch["layers"]
    params = sum(4 * d * d + 2 * d * layer["ffn"] for layer in layers) + 65 * d * 2
    macs = params * 128.0
    heads = sum(layer["n_head"] for layer in layers) / len(layers)
    error = float(np.clip(0.06 + 2.5 * params ** -0.33 + 0.004 * heads / len(layers) + rng.normal(0, 0.004),
                          0.01, 1.0))
    latency = float(0.35 + 1.1e-5 * params ** 0.93 + 0.08 * sum(layer["n_head"] for layer in layers)
                    + abs(rng.normal(0, 0.05)))
    measured = latency * float(np.exp(rng.normal(0.02, 0.06)))
    return {
        "error": error,
        "latency_ms": latency,
        "params_m": params / 1e6,
        "macs": macs,
        "predicted_latency_ms": latency,
        "measured_latency_ms": measured,
    }


def demo_trials(
    n_trials: int = 300,
    seed: int = 0,
    n_objectives: int = 2,
    constraints: dict[str, float] | None = None,
    fail_fraction: float = 0.03,
    only_failed: bool = False,
) -> tuple[list[Literal["minimize", "maximize"]], dict[str, Any], list[FrozenTrial]]:
    """``(directions, archlab study attr, frozen trials)`` of a synthetic study (nothing written).

    Objectives: ``error`` and ``latency_ms`` (ms), plus ``params_m`` (millions) when
    ``n_objectives`` is 3. Constraints default to ``{"latency_ms": 2.5, "macs": 8e7}`` (upper
    bounds), stored with each trial as Optuna stores ``trial.set_constraint`` (value - bound).
    Same seed, same trials.
    """
    from optuna.distributions import CategoricalDistribution, IntDistribution
    from optuna.trial import TrialState, create_trial

    space = demo_space()
    objs = list(OBJECTIVES[:n_objectives])
    bounds = {"latency_ms": 2.5, "macs": 8e7} if constraints is None else dict(constraints)
    attr = {
        "version": "demo", "space": space.to_json(), "objectives": objs, "constraints": bounds,
        "experiment": None, "files": {"supernet": None, "predictor": None}, "sampler": "random",
    }
    rng = np.random.default_rng(seed)
    archs = space.sample_many(n_trials, seed=seed, unique=False)
    t0 = _dt.datetime(2026, 1, 1, 22, 0, 0)
    dists: dict[str, Any] = {}
    frozen = []
    for i, arch in enumerate(archs):
        flat = space.to_params(arch)
        for k in flat:
            if k not in dists:
                dists[k] = IntDistribution(1, 6) if k == "n_layer" else CategoricalDistribution(_choices(k))
        metrics = _metrics(arch, rng)
        failed = only_failed or rng.random() < fail_fraction
        start = t0 + _dt.timedelta(seconds=3 * i)
        attrs = {"arch": arch.key, "metrics": metrics}
        cons = {k: metrics[k] - b for k, b in bounds.items()} if not failed else None
        trial = create_trial(
            state=TrialState.FAIL if failed else TrialState.COMPLETE,
            values=None if failed else [metrics[o["name"]] for o in objs],
            params=flat, distributions={k: dists[k] for k in flat},
            user_attrs=attrs if not failed else {"arch": arch.key}, constraints=cons,
        )
        trial.datetime_start = start
        trial.datetime_complete = start + _dt.timedelta(seconds=2 + (i % 3))
        frozen.append(trial)
    return [o["direction"] for o in objs], attr, frozen


def make_demo_study(
    storage: str | Path, study_name: str = "demo", n_trials: int = 300, seed: int = 0, *, fast: bool = True,
    **options: Any,
) -> str:
    """Write the synthetic study of ``demo_trials`` into ``storage`` (any spec
    ``archlab.search.storage.open_storage`` takes: an SQLite or journal file, a run directory, a
    URL; a relative path is made absolute) through ``study.add_trials``; returns the storage
    URL. ``options`` go to ``demo_trials`` (``n_objectives``, ``constraints``, ``fail_fraction``,
    ``only_failed``).

    ``fast`` turns off SQLite's fsync while writing (a demo file, not a real run).
    """
    import optuna

    from archlab.search.storage import close_storage, open_storage, sqlite_file, storage_url

    url = storage_url(storage if "://" in str(storage) else Path(storage).resolve())
    st: Any = open_storage(url, must_exist=False)
    if fast and sqlite_file(url) is not None:
        import sqlalchemy

        @sqlalchemy.event.listens_for(st.engine, "connect")
        def _pragma(conn: Any, _record: Any) -> None:
            conn.execute("PRAGMA synchronous=OFF")

        st.engine.dispose()
    directions, attr, frozen = demo_trials(n_trials, seed, **options)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=st, study_name=study_name, directions=directions)
    study.set_user_attr("archlab", attr)
    study.add_trials(frozen)
    close_storage(st)
    return url


def _choices(name: str) -> tuple[Any, ...]:
    leaf = name.rsplit(".", 1)[-1]
    return {"d_model": (64, 96, 128, 192), "n_head": (2, 4, 8), "ffn": (128, 256, 512, 1024)}[leaf]
