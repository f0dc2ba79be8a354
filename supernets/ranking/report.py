"""Ranking reports on disk: ``report.json`` (strict JSON), written atomically. Its plot
(``report.html``) is drawn on the top floor (``archlab.rank_plot``): no plotting here."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from archlab.core.io import atomic_write_json
from archlab.core.layout import RANK_REPORT as REPORT_NAME  # the run layout names it
from archlab.spaces import SearchSpace


def write_report(report: Mapping[str, Any], out_dir: str | os.PathLike[str], space: SearchSpace | None = None) -> None:
    """``report.json`` under ``out_dir``, atomically (NaN/inf as null)."""
    del space  # kept for callers that pass it; the plot is archlab.rank_plot's
    atomic_write_json(Path(out_dir) / REPORT_NAME, _json_safe(report))


def _json_safe(obj: Any) -> Any:
    """NaN/inf -> None (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj
