"""Data for the dashboard's routing page, from a study's trial table (pandas only, no torch).

Routing metrics are stored with each evaluated architecture as extra metrics
``metric.routing.*`` (``archlab.search.objectives.routing_metrics``): per MoE layer ``i`` the
expert loads ``routing.layers.<i>.load.<e>``, the experts-per-token histogram
``routing.layers.<i>.experts_hist.<j>`` and scalars (``load_cv``, ``dropped``, ...). The
router family of a trial comes from its ``arch.layers.<i>.moe_router`` columns.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

PREFIX = "metric.routing."
_LOAD = re.compile(r"^metric\.routing\.layers\.(\d+)\.load\.(\d+)$")
_HIST = re.compile(r"^metric\.routing\.layers\.(\d+)\.experts_hist\.(\d+)$")
_ROUTER = re.compile(r"^arch\.layers\.(\d+)\.moe_router$")
_EXPERTS = re.compile(r"^arch\.layers\.(\d+)\.moe_experts$")


def routing_columns(trials: pd.DataFrame) -> list[str]:
    """The ``metric.routing.*`` columns of ``trials``."""
    return [c for c in trials.columns if c.startswith(PREFIX)]


def _matrix(row: pd.Series, pattern: re.Pattern[str]) -> pd.DataFrame:
    cells = [(int(m.group(1)), int(m.group(2)), row[c]) for c in row.index if (m := pattern.match(c))]
    cells = [(i, j, float(v)) for i, j, v in cells if v is not None and np.isfinite(float(v))]
    if not cells:
        return pd.DataFrame()
    frame = pd.DataFrame(cells, columns=["layer", "col", "value"]).pivot(index="layer", columns="col", values="value")
    return frame.sort_index().sort_index(axis=1)


def load_matrix(row: pd.Series) -> pd.DataFrame:
    """Layers (rows) x experts (columns): the fraction of tokens each expert processed."""
    return _matrix(row, _LOAD)


def experts_histogram(row: pd.Series) -> pd.DataFrame:
    """Layers (rows) x number of real experts per token (columns): the fraction of tokens."""
    return _matrix(row, _HIST)


def router_family(trials: pd.DataFrame) -> pd.Series:
    """Per trial, the router family of its routed layers: one name, names joined by ``+``
    when layers differ, ``dense`` when no layer routes (or ``topk`` when the space has no
    ``moe_router`` choice but routed layers)."""
    routers = {int(m.group(1)): c for c in trials.columns if (m := _ROUTER.match(c))}
    experts = {int(m.group(1)): c for c in trials.columns if (m := _EXPERTS.match(c))}

    def family(row: pd.Series) -> str:
        names = []
        for i, col in sorted(experts.items()):
            e = row[col]
            if e is None or (isinstance(e, float) and not np.isfinite(e)) or int(e) <= 1:
                continue
            name = row[routers[i]] if i in routers else "topk"
            names.append(str(name) if isinstance(name, str) else "topk")
        return "+".join(sorted(set(names))) if names else "dense"

    return trials.apply(family, axis=1) if len(trials) else pd.Series([], dtype=object)


__all__ = ["experts_histogram", "load_matrix", "router_family", "routing_columns"]
