"""The run folder's layout, written once: ``RunLayout(root)`` names every file a stage writes.

A run folder (``runs/<name>/`` by default) holds what each stage leaves for the next::

    supernet/               trained weights (model.safetensors + config.json) and ckpt.pt
    supernet-<sharing>/     the same, for another weight-sharing mode of the experiment
    latency.parquet         measured latencies (append-only)
    predictors/<kind>.json  fitted predictors (latency.json, accuracy.json, ...)
    study.db                the Optuna study (SQLite; any other storage URL may replace it)
    rank/report.json        the ranking-consistency report
    oneshot/<method>-seed<seed>.json  one-shot search results
    export/trial-<n>/       exported subnets

Every module that reads or writes these asks a ``RunLayout`` instead of spelling the names;
the default storage URL (``sqlite:///<root>/study.db``) is computed here and nowhere else.
Pure paths: nothing here touches the disk except ``has_trained_supernet``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: where run folders live unless a caller says otherwise (``runs/<name>/``)
DEFAULT_RUNS_DIR = Path("runs")
SUPERNET_DIR = "supernet"
CHECKPOINT_NAME = "ckpt.pt"
WEIGHTS_NAME = "model.safetensors"
LATENCY_TABLE = "latency.parquet"
PREDICTORS_DIR = "predictors"
STUDY_DB = "study.db"
RANK_DIR = "rank"
RANK_REPORT = "report.json"
ONESHOT_DIR = "oneshot"
EXPORT_DIR = "export"


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run folder ``root`` (relative paths stay relative: no ``resolve``)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def named(cls, name: str, runs_dir: str | Path | None = None) -> RunLayout:
        """The run folder ``runs_dir / name`` (``runs_dir`` defaults to ``DEFAULT_RUNS_DIR``)."""
        return cls(Path(DEFAULT_RUNS_DIR if runs_dir is None else runs_dir) / name)

    # supernet -------------------------------------------------------------------
    @property
    def supernet(self) -> Path:
        """``root/supernet``: the supernet trained with the experiment's own sharing mode."""
        return self.root / SUPERNET_DIR

    def supernet_for(self, sharing: str | None = None) -> Path:
        """``root/supernet`` when ``sharing`` is None, else ``root/supernet-<sharing>``."""
        return self.supernet if sharing is None else self.root / f"{SUPERNET_DIR}-{sharing}"

    @property
    def checkpoint(self) -> Path:
        """``root/supernet/ckpt.pt``: the training checkpoint."""
        return self.supernet / CHECKPOINT_NAME

    @property
    def weights(self) -> Path:
        """``root/supernet/model.safetensors``: the final trained weights."""
        return self.supernet / WEIGHTS_NAME

    def trained_weights(self) -> Path:
        """The file that identifies the trained supernet: the final weights when written,
        else the checkpoint (which may not exist either)."""
        return self.weights if self.weights.is_file() else self.checkpoint

    def has_trained_supernet(self) -> bool:
        """True when ``supernet/`` exists and holds any file (weights or a checkpoint)."""
        return self.supernet.is_dir() and any(self.supernet.iterdir())

    # measurements and predictors ------------------------------------------------
    @property
    def latency_table(self) -> Path:
        """``root/latency.parquet``: the append-only latency measurements."""
        return self.root / LATENCY_TABLE

    @property
    def predictors(self) -> Path:
        """``root/predictors``: fitted predictor files, one ``<kind>.json`` each."""
        return self.root / PREDICTORS_DIR

    def predictor(self, kind: str = "latency") -> Path:
        """``root/predictors/<kind>.json`` (``latency``, ``accuracy``, ...)."""
        return self.predictors / f"{kind}.json"

    # search ------------------------------------------------------------------------
    @property
    def study_db(self) -> Path:
        """``root/study.db``: the default (SQLite) study storage."""
        return self.root / STUDY_DB

    @property
    def storage_url(self) -> str:
        """``sqlite:///<root>/study.db``: the default storage URL (the only place it is made)."""
        return f"sqlite:///{self.study_db}"

    def oneshot_result(self, method: str, seed: int) -> Path:
        """``root/oneshot/<method>-seed<seed>.json``: a one-shot search's result."""
        return self.root / ONESHOT_DIR / f"{method}-seed{int(seed)}.json"

    # reports and exports ----------------------------------------------------------
    @property
    def rank_dir(self) -> Path:
        """``root/rank``: where ``archlab rank`` writes its report and plot."""
        return self.root / RANK_DIR

    @property
    def rank_report(self) -> Path:
        """``root/rank/report.json``."""
        return self.rank_dir / RANK_REPORT

    @property
    def export_dir(self) -> Path:
        """``root/export``: exported subnets."""
        return self.root / EXPORT_DIR

    def exported_trial(self, number: int) -> Path:
        """``root/export/trial-<number>``."""
        return self.export_dir / f"trial-{int(number)}"


def default_storage_url(run_dir: str | Path | None, study_name: str) -> str:
    """The storage a search uses when given none: ``run_dir/study.db``, or
    ``runs/<study_name>/study.db`` without a run folder."""
    layout = RunLayout(Path(run_dir)) if run_dir is not None else RunLayout.named(study_name)
    return layout.storage_url


__all__ = ["DEFAULT_RUNS_DIR", "RunLayout", "default_storage_url"]
