"""Read-only results API over Optuna studies (the dashboard's only door into search).

Imports numpy and pandas at module level, Optuna inside the functions, and never torch.

- ``list_studies(storage)``: one row per study with counts, objectives, front size and
  hypervolume.
- ``load_trials(storage, study_name)``: one row per trial: ``number``, ``state``,
  ``datetime_start``, ``datetime_complete``, ``duration_s``, one column per objective (by name),
  ``metric.<name>`` for extra metrics, ``constraint.<name>`` (value - bound, feasible when
  <= 0), ``feasible``, ``arch`` (JSON), ``method`` (only in studies with one-shot trials:
  ``oneshot:<method>``, else None) and ``arch.<flat param>``. ``df.attrs`` holds
  ``objectives`` ([{"name", "direction"}]), ``constraints`` ({metric: bound}), ``space`` (JSON
  or None), ``study_name`` and the whole ``archlab`` user-attribute dict.
- ``pareto_front(trials)``: the feasible non-dominated rows (exact); a row whose ``arch``
  repeats an earlier front row is dropped.
- ``hypervolume(trials)`` and ``hypervolume_history(trials)``.

Hypervolume normalisation (documented contract):

1. Only completed, feasible trials with finite objective values count.
2. Every objective becomes a loss: maximised objectives are negated.
3. Each loss is scaled linearly so that the best value among the counted trials maps to 0 and
   the worst to 1 (``bounds=(best, worst)``, in the objectives' own units and directions,
   fixes the scale instead, e.g. to compare studies). An objective with a single value has
   span 1.
4. The reference point is 1.1 on every scaled axis (10 % beyond the worst value), so the
   default hypervolume lies in ``[0, 1.1**m]``. ``reference`` (one raw value per objective, as a
   sequence in objective order or a ``{name: value}`` dict) replaces it; it is scaled the same
   way. Points add volume only where they are strictly better than the reference.
5. Exact for every number of objectives (see ``archlab.search.pareto``): fast for 2 and 3,
   ``O(n^(m-1))`` beyond.

``hypervolume_history`` fixes the scale from the whole frame, so the history is non-decreasing
and ends at ``hypervolume(trials)``.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import pandas as pd

from archlab.core.errors import ArchlabError

from .pareto import hypervolume_of, non_dominated_mask
from .rdb_read import (
    TrialTables,
    concat_tables,
    finished_mark,
    keep_trials,
    read_tables,
    tables_from_trials,
)
from .storage import StorageSpec, open_storage

if TYPE_CHECKING:
    from optuna import Study

# objectives of a front or hypervolume: names (directions from the frame's attrs),
# ``[{"name", "direction"}]`` or ``{name: direction}``
ObjectivesSpec: TypeAlias = "Sequence[str | Mapping[str, str]] | Mapping[str, str]"
# a point in objective space: one value per objective, in order or by name
PointSpec: TypeAlias = "Sequence[float] | np.ndarray | Mapping[str, float]"

ATTR_KEY = "archlab"
REFERENCE_MARGIN = 0.1
FIXED_COLUMNS = ("number", "state", "datetime_start", "datetime_complete", "duration_s")

Objectives = Sequence[Mapping[str, str]]


class ResultsError(ArchlabError):
    """A results query names a study, objective or column that does not exist."""


# studies ------------------------------------------------------------------------------
def _open(storage: Any) -> Any:
    """``storage`` opened read-only (``open_storage(..., read_only=True)``: never creates a
    database or stamps a schema); an Optuna storage object is used as given."""
    import optuna

    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    return open_storage(storage, read_only=True)


def _load_study(storage: Any, study_name: str) -> Any:
    """The study ``study_name`` of ``storage`` (opened read-only by ``_open``)."""
    return _study_and_storage(storage, study_name)[0]


def _study_and_storage(storage: Any, study_name: str) -> tuple[Any, Any]:
    """``(study, its storage)``, the storage opened by ``_open``."""
    import optuna

    st = _open(storage)
    try:
        return optuna.load_study(study_name=study_name, storage=st), st
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(st, include_best_trial=False)]
        raise ResultsError(
            f"no study named {study_name!r} in the storage; studies there: {', '.join(names) or 'none'}"
        ) from None


def study_objectives(study: Study) -> list[dict[str, str]]:
    """``[{"name", "direction"}]`` of a study: from archlab's user attrs, else ``value_<i>``."""
    info = study.user_attrs.get(ATTR_KEY) or {}
    objs = info.get("objectives")
    directions = [d.name.lower() for d in study.directions]
    if objs and len(objs) == len(directions):
        return [{"name": str(o["name"]), "direction": str(o["direction"])} for o in objs]
    if len(directions) == 1:
        return [{"name": "value", "direction": directions[0]}]
    return [{"name": f"value_{i}", "direction": d} for i, d in enumerate(directions)]


def list_studies(storage: StorageSpec, trials_of: Callable[[str], pd.DataFrame] | None = None) -> pd.DataFrame:
    """One row per study in ``storage``.

    ``trials_of(study_name)``, when given, supplies each study's ``load_trials`` frame (the
    dashboard passes its cache, so the studies page and the explorer read a study once).

    Columns: ``study_name``, ``n_trials``, ``n_complete``, ``n_fail``, ``n_running``,
    ``n_pruned``, ``objectives`` (names), ``directions``, ``datetime_start``, ``last_update``,
    ``front_size`` (feasible non-dominated trials), ``hypervolume`` (normalised, see module
    docstring), ``experiment``, ``sampler``.
    """
    import optuna

    st = _open(storage)
    rows = []
    for summary in optuna.get_all_study_summaries(st, include_best_trial=False):
        trials = trials_of(summary.study_name) if trials_of else load_trials(st, summary.study_name)
        states = trials["state"].value_counts() if len(trials) else pd.Series(dtype=int)
        stamps = pd.concat([trials["datetime_start"], trials["datetime_complete"]]).dropna()
        info = trials.attrs.get(ATTR_KEY) or {}
        rows.append(
            {
                "study_name": summary.study_name,
                "n_trials": len(trials),
                "n_complete": int(states.get("COMPLETE", 0)),
                "n_fail": int(states.get("FAIL", 0)),
                "n_running": int(states.get("RUNNING", 0)),
                "n_pruned": int(states.get("PRUNED", 0)),
                "objectives": [o["name"] for o in trials.attrs["objectives"]],
                "directions": [o["direction"] for o in trials.attrs["objectives"]],
                "datetime_start": summary.datetime_start,
                "last_update": stamps.max() if len(stamps) else summary.datetime_start,
                "front_size": len(pareto_front(trials)),
                "hypervolume": hypervolume(trials),
                "experiment": info.get("experiment"),
                "sampler": info.get("sampler"),
            }
        )
    columns = [
        "study_name", "n_trials", "n_complete", "n_fail", "n_running", "n_pruned", "objectives",
        "directions", "datetime_start", "last_update", "front_size", "hypervolume", "experiment",
        "sampler",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def load_trials(storage: StorageSpec, study_name: str) -> pd.DataFrame:
    """Every trial of a study as a DataFrame (columns in the module docstring), by number."""
    return TrialsReader(storage, study_name).read()


def _study_frame(study: Study, tables: TrialTables) -> pd.DataFrame:
    info = dict(study.user_attrs.get(ATTR_KEY) or {})
    objectives = study_objectives(study)
    constraints = dict(info.get("constraints") or {})
    df = _trials_frame(tables, [o["name"] for o in objectives], list(constraints))
    df.attrs["objectives"] = objectives
    df.attrs["constraints"] = constraints
    df.attrs["space"] = info.get("space")
    df.attrs["study_name"] = study.study_name
    df.attrs[ATTR_KEY] = info
    return df


class TrialsReader:
    """``load_trials`` of one study, again and again, reading only what changed (a live view).

    Optuna never changes a finished trial, so after each read the rows of every trial up to
    the last one before the first unfinished trial (by ``trial_id``) are kept and the next read
    asks the storage only for trials after it. A storage without the bulk SQL path, or a study
    that was deleted and created again under the same name, is read whole. Thread-safe."""

    def __init__(self, storage: StorageSpec, study_name: str) -> None:
        self.storage = storage
        self.study_name = study_name
        self._lock = threading.Lock()
        self._study_id: int | None = None
        self._kept: TrialTables | None = None
        self._mark: int | None = None
        #: trials the last read asked the storage for (the rest came from the kept rows)
        self.last_read_trials = 0

    def read(self) -> pd.DataFrame:
        with self._lock:
            study, st = _study_and_storage(self.storage, self.study_name)
            sid = st.get_study_id_from_name(self.study_name)
            if sid != self._study_id:
                self._study_id, self._kept, self._mark = sid, None, None
            new = read_tables(st, sid, after=self._mark)
            if new is None:
                tables = tables_from_trials(study.get_trials(deepcopy=False))
                self.last_read_trials = len(tables.trials)
                return _study_frame(study, tables)
            self.last_read_trials = len(new.trials)
            tables = new if self._kept is None else concat_tables(self._kept, new)
            mark = finished_mark(tables)
            if mark is not None:
                self._kept, self._mark = keep_trials(tables, mark), mark
            return _study_frame(study, tables)


def _trials_frame(tables: TrialTables, names: list[str], bound_names: list[str]) -> pd.DataFrame:
    """The ``load_trials`` frame from long tables, column by column (no per-trial Python rows).

    Column order: the fixed columns, objectives, ``metric.<k>`` in first-seen order (trials by
    number), ``constraint.<k>`` (the study's bounded constraints first, then first-seen),
    ``feasible``, ``arch``, ``arch.<param>`` in first-seen order."""
    tr = tables.trials.sort_values("number", kind="stable").reset_index(drop=True)
    n = len(tr)
    where = pd.Index(tr["trial_id"])

    def located(table: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """``table``'s rows of known trials, ordered by trial number (stable), and their rows in the frame."""
        pos = where.get_indexer(table["trial_id"]) if len(table) else np.zeros(0, dtype=np.int64)
        order = np.argsort(pos, kind="stable")
        order = order[pos[order] >= 0]
        return table.iloc[order].reset_index(drop=True), pos[order]

    def scatter(idx: np.ndarray, vals: Any, fill: Any = math.nan) -> list[Any]:
        col = np.full(n, fill, dtype=object)
        col[idx] = vals
        return col.tolist()

    cols: dict[str, Any] = {
        "number": tr["number"].astype(np.int64).to_numpy(),
        "state": tr["state"].tolist(),
        "datetime_start": tr["datetime_start"],
        "datetime_complete": tr["datetime_complete"],
        "duration_s": (tr["datetime_complete"] - tr["datetime_start"]).dt.total_seconds().to_numpy(dtype=float),
    }
    vals, pos = located(tables.values)
    objective = vals["objective"].to_numpy()
    for i, name in enumerate(names):
        col = np.full(n, math.nan)
        sel = objective == i
        col[pos[sel]] = vals["value"].to_numpy(dtype=float)[sel]
        cols[name] = col

    user, upos = located(tables.user)
    key = user["key"].to_numpy(dtype=object)
    uval = user["value"].to_numpy(dtype=object)
    m_sel = np.flatnonzero(key == "metrics")
    m_dicts = uval[m_sel].tolist()
    m_keep = [i for i, d in enumerate(m_dicts) if isinstance(d, dict) and d]  # decoded JSON: dicts
    if m_keep:
        dicts = [m_dicts[i] for i in m_keep]
        m_pos = upos[m_sel][m_keep]
        keys = dict.fromkeys(dicts[0])  # every key, in first-seen order
        for d in dicts:
            if d.keys() != keys.keys():
                keys.update(dict.fromkeys(d))
        for k in keys:
            if k in names:
                continue
            kvals = [d.get(k) for d in dicts]  # a key a trial lacks is None here: NaN, as in the frame
            try:
                converted = np.array(kvals, dtype=float)
            except (TypeError, ValueError):  # text, lists, ...: NaN where not a number
                converted = np.array([_float(x) for x in kvals], dtype=float)
            col = np.full(n, math.nan)
            col[m_pos] = converted
            cols[f"metric.{k}"] = col

    cons, cpos = located(tables.constraints)
    c_names = cons["name"].to_numpy(dtype=object)
    c_vals = np.array(cons["value"].tolist(), dtype=float)
    feasible = (tr["state"] == "COMPLETE").to_numpy().copy()
    for b in bound_names:
        has = np.zeros(n, dtype=bool)
        has[cpos[c_names == b]] = True
        feasible &= has
    feasible[cpos[~(c_vals <= 0)]] = False
    for k in list(bound_names) + [x for x in pd.unique(c_names) if x not in bound_names]:
        col = np.full(n, math.nan)
        sel = c_names == k
        col[cpos[sel]] = c_vals[sel]
        cols[f"constraint.{k}"] = col
    cols["feasible"] = feasible

    a_sel = np.flatnonzero(key == "arch")
    archs = np.empty(len(a_sel), dtype=object)
    archs[:] = [v if type(v) is str else _arch_text(v) for v in uval[a_sel].tolist()]
    cols["arch"] = scatter(upos[a_sel], archs, fill=None)
    o_sel = np.flatnonzero(key == "method")  # one-shot trials (archlab.search.oneshot_study)
    if len(o_sel):
        cols["method"] = scatter(upos[o_sel], uval[o_sel], fill=None)

    params, ppos = located(tables.params)
    p_codes, p_names = pd.factorize(params["name"].to_numpy(dtype=object))  # names in first-seen order
    p_vals = params["value"].to_numpy(dtype=object)
    for j, k in enumerate(p_names):
        sel = p_codes == j
        cols[f"arch.{k}"] = scatter(ppos[sel], p_vals[sel])
    df = pd.DataFrame(cols)
    for when in ("datetime_start", "datetime_complete"):
        df[when] = pd.to_datetime(df[when])
    return df


def _arch_text(arch: Any) -> str | None:
    return arch if isinstance(arch, str) else (json.dumps(arch, sort_keys=True) if arch else None)


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


# fronts and hypervolume ---------------------------------------------------------------
def _objectives(trials: pd.DataFrame, objectives: ObjectivesSpec | None) -> list[dict[str, str]]:
    if objectives is None:
        objs = trials.attrs.get("objectives")
        if not objs:
            raise ResultsError(
                "the trials frame has no attrs['objectives']; pass objectives=[{'name':..., 'direction':...}]"
            )
    elif isinstance(objectives, Mapping):
        objs = [{"name": k, "direction": _direction(v)} for k, v in objectives.items()]
    else:
        known = {o["name"]: o["direction"] for o in trials.attrs.get("objectives") or []}
        objs = []
        for o in objectives:
            if isinstance(o, str):
                if o not in known:
                    raise ResultsError(f"objective {o!r} has no known direction; known: {', '.join(known) or 'none'}")
                objs.append({"name": o, "direction": known[o]})
            else:
                objs.append({"name": o["name"], "direction": _direction(o["direction"])})
    missing = [o["name"] for o in objs if o["name"] not in trials.columns]
    if missing:
        raise ResultsError(f"objective column {missing[0]!r} is not in the trials frame")
    return [{"name": o["name"], "direction": _direction(o["direction"])} for o in objs]


def _direction(d: Any) -> str:
    text = str(getattr(d, "name", d)).lower()
    if text in ("min", "minimize"):
        return "minimize"
    if text in ("max", "maximize"):
        return "maximize"
    raise ResultsError(f"direction {d!r}: allowed: 'minimize', 'maximize' (or 'min', 'max')")


def _counted(trials: pd.DataFrame, objs: list[dict[str, str]]) -> tuple[pd.DataFrame, np.ndarray]:
    """Completed feasible rows with finite objective values, and their loss matrix."""
    keep = np.ones(len(trials), dtype=bool)
    if "state" in trials.columns:
        keep &= (trials["state"] == "COMPLETE").to_numpy()
    if "feasible" in trials.columns:
        keep &= trials["feasible"].fillna(False).astype(bool).to_numpy()
    Y = _losses(trials, objs)
    keep &= np.isfinite(Y).all(axis=1)
    return trials[keep], Y[keep]


def _losses(trials: pd.DataFrame, objs: list[dict[str, str]]) -> np.ndarray:
    cols = [trials[o["name"]].to_numpy(dtype=float) for o in objs]
    Y = np.stack(cols, axis=1) if cols else np.zeros((len(trials), 0))
    signs = np.array([-1.0 if o["direction"] == "maximize" else 1.0 for o in objs])
    return Y * signs


def pareto_front(trials: pd.DataFrame, objectives: ObjectivesSpec | None = None) -> pd.DataFrame:
    """The feasible, completed, non-dominated rows of ``trials`` (exact), sorted by the first
    objective. ``objectives``: names, ``[{"name", "direction"}]`` or ``{name: direction}``
    (default ``trials.attrs["objectives"]``). Rows repeating an earlier front row's ``arch``
    are dropped."""
    objs = _objectives(trials, objectives)
    rows, Y = _counted(trials, objs)
    front = rows[non_dominated_mask(Y)] if len(rows) else rows
    if "arch" in front.columns and len(front):
        has = front["arch"].notna()
        front = front[~(front["arch"].duplicated(keep="first") & has)]
    order = np.lexsort(_losses(front, objs).T[::-1]) if len(front) else np.arange(0)
    out = front.iloc[order].copy()
    out.attrs = dict(trials.attrs)
    return out


def _scale(
    Y: np.ndarray, objs: list[dict[str, str]], bounds: tuple[PointSpec, PointSpec] | None,
    reference: PointSpec | None,
) -> tuple[np.ndarray, np.ndarray]:
    m = len(objs)
    signs = np.array([-1.0 if o["direction"] == "maximize" else 1.0 for o in objs])
    if bounds is not None:
        best, worst = (_vector(b, objs, "bounds") * signs for b in bounds)
    elif len(Y):
        best, worst = Y.min(axis=0), Y.max(axis=0)
    else:
        best, worst = np.zeros(m), np.ones(m)
    span = np.where(worst - best > 0, worst - best, 1.0)
    if reference is None:
        ref = np.full(m, 1.0 + REFERENCE_MARGIN)
    else:
        ref = (_vector(reference, objs, "reference") * signs - best) / span
    return (Y - best) / span, ref


def _vector(v: PointSpec, objs: list[dict[str, str]], what: str) -> np.ndarray:
    if isinstance(v, Mapping):
        missing = [o["name"] for o in objs if o["name"] not in v]
        if missing:
            raise ResultsError(f"{what} has no value for objective {missing[0]!r}")
        return np.array([float(v[o["name"]]) for o in objs])
    arr = np.asarray(v, dtype=float).reshape(-1)
    if arr.shape[0] != len(objs):
        raise ResultsError(f"{what} has {arr.shape[0]} values for {len(objs)} objectives")
    return arr


def hypervolume(
    trials: pd.DataFrame, reference: PointSpec | None = None, objectives: ObjectivesSpec | None = None, *,
    bounds: tuple[PointSpec, PointSpec] | None = None,
) -> float:
    """Normalised hypervolume of the feasible front of ``trials`` (see module docstring)."""
    objs = _objectives(trials, objectives)
    _, Y = _counted(trials, objs)
    if len(Y) == 0:
        return 0.0
    Z, ref = _scale(Y, objs, bounds, reference)
    return hypervolume_of(Z, ref)


def hypervolume_history(
    trials: pd.DataFrame, reference: PointSpec | None = None, objectives: ObjectivesSpec | None = None, *,
    bounds: tuple[PointSpec, PointSpec] | None = None,
) -> pd.DataFrame:
    """``DataFrame(number, hypervolume)``: the hypervolume of all trials up to and including
    each completed trial (by ``number``), on the scale of the whole frame."""
    objs = _objectives(trials, objectives)
    done = trials[trials["state"] == "COMPLETE"] if "state" in trials.columns else trials
    done = done.sort_values("number", kind="stable")
    counted, Y = _counted(done, objs)
    if len(done) == 0:
        return pd.DataFrame({"number": pd.Series(dtype=int), "hypervolume": pd.Series(dtype=float)})
    Z, ref = _scale(Y, objs, bounds, reference)
    counted_numbers = dict(zip(counted["number"].tolist(), range(len(counted))))
    front = np.zeros((0, len(objs)))
    hv = 0.0
    out = []
    for number in done["number"].tolist():
        i = counted_numbers.get(number)
        if i is not None:
            z = Z[i]
            inside = bool(np.all(z < ref))
            dominated = bool(len(front)) and bool(np.any(np.all(front <= z, axis=1)))
            if inside and not dominated:
                front = np.vstack([front[~np.all(z <= front, axis=1)], z])
                hv = hypervolume_of(front, ref)
        out.append((int(number), hv))
    return pd.DataFrame(out, columns=["number", "hypervolume"])


# export -------------------------------------------------------------------------------
def export_trials(trials: pd.DataFrame, path: str | Path) -> Path:
    """Write a trials (or front) frame to ``.csv`` or ``.parquet`` (atomically); returns the path.

    Parquet keeps ``attrs`` (objectives, constraints, space) in its metadata.
    """
    from archlab.core.io import atomic_open

    path = Path(path)
    if path.suffix not in (".csv", ".parquet"):
        raise ResultsError(f"{path}: export to .csv or .parquet")
    if path.suffix == ".csv":
        with atomic_open(path, "w") as fh:
            trials.to_csv(fh, index=False)
    else:
        import io

        buf = io.BytesIO()
        frame = trials.copy()
        frame.attrs = json.loads(json.dumps(trials.attrs, default=str))
        frame.to_parquet(buf, index=False)
        with atomic_open(path, "wb") as fh:
            fh.write(buf.getvalue())
    return path
