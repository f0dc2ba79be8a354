"""Synthetic archlab studies for demos, tests and the dashboard benchmark.

``make_demo_study`` writes a study that follows the study contract (``archlab`` study attrs,
``arch``/``metrics`` trial attrs, ``set_constraint``) with made-up but plausible metrics of a
small transformer LM space, without training anything. The dashboard itself never calls it
(the app only reads storages); it exists so a study of any size can be made in seconds.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import numpy as np
from archlab.spaces import library

OBJECTIVES = (
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


def make_demo_study(
    storage: str | Path,
    study_name: str = "demo",
    n_trials: int = 300,
    seed: int = 0,
    n_objectives: int = 2,
    constraints: dict[str, float] | None = None,
    fail_fraction: float = 0.03,
    only_failed: bool = False,
    fast: bool = True,
) -> str:
    """Write a synthetic study with ``n_trials`` trials into ``storage`` (an SQLite path or any
    Optuna storage URL); returns the storage URL.

    Objectives: ``error`` and ``latency_ms`` (ms), plus ``params_m`` (millions) when
    ``n_objectives`` is 3. Constraints default to ``{"latency_ms": 2.5, "macs": 8e7}`` (upper
    bounds). ``fast`` turns off SQLite's fsync while writing (a demo file, not a real run).
    Same seed, same study.
    """
    import optuna
    from optuna.distributions import CategoricalDistribution, IntDistribution
    from optuna.trial import TrialState, create_trial

    url = str(storage)
    if "://" not in url:
        url = f"sqlite:///{Path(url).resolve()}"
    st: Any = optuna.storages.RDBStorage(url) if url.startswith("sqlite") else url
    if fast and url.startswith("sqlite"):
        import sqlalchemy

        @sqlalchemy.event.listens_for(st.engine, "connect")
        def _pragma(conn: Any, _record: Any) -> None:
            conn.execute("PRAGMA synchronous=OFF")

        st.engine.dispose()
    space = demo_space()
    objs = list(OBJECTIVES[:n_objectives])
    bounds = {"latency_ms": 2.5, "macs": 8e7} if constraints is None else dict(constraints)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=st, study_name=study_name, directions=[o["direction"] for o in objs])
    study.set_user_attr("archlab", {
        "version": "demo", "space": space.to_json(), "objectives": objs, "constraints": bounds,
        "experiment": None, "files": {"supernet": None, "predictor": None}, "sampler": "random",
    })
    rng = np.random.default_rng(seed)
    archs = space.sample_many(n_trials, seed=seed, unique=False)
    t0 = _dt.datetime(2026, 1, 1, 22, 0, 0)
    frozen = []
    for i, arch in enumerate(archs):
        flat = space.to_params(arch)
        dists = {k: IntDistribution(1, 6) if k == "n_layer" else CategoricalDistribution(_choices(k))
                 for k in flat}
        metrics = _metrics(arch, rng)
        failed = only_failed or rng.random() < fail_fraction
        start = t0 + _dt.timedelta(seconds=3 * i)
        attrs = {"arch": arch.key, "metrics": metrics}
        cons = {k: metrics[k] - b for k, b in bounds.items()} if not failed else None
        frozen.append(create_trial(
            state=TrialState.FAIL if failed else TrialState.COMPLETE,
            values=None if failed else [metrics[o["name"]] for o in objs],
            params=flat, distributions=dists, user_attrs=attrs if not failed else {"arch": arch.key},
            constraints=cons,
        ))
        frozen[-1].datetime_start = start
        frozen[-1].datetime_complete = start + _dt.timedelta(seconds=2 + (i % 3))
    study.add_trials(frozen)
    if isinstance(st, optuna.storages.RDBStorage):
        st.engine.dispose()
    return url


def _choices(name: str) -> tuple[Any, ...]:
    leaf = name.rsplit(".", 1)[-1]
    return {"d_model": (64, 96, 128, 192), "n_head": (2, 4, 8), "ffn": (128, 256, 512, 1024)}[leaf]
