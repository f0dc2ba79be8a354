"""The run folder's layout, written once (archlab.core.layout.RunLayout): its paths, the one
default storage URL, and the modules that now ask it instead of spelling file names."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from archlab.core.layout import DEFAULT_RUNS_DIR, RunLayout, default_storage_url


def test_paths_of_a_run_folder():
    lay = RunLayout(Path("runs/x"))
    assert lay.supernet == Path("runs/x/supernet")
    assert lay.supernet_for() == lay.supernet and lay.supernet_for("mos-layer") == Path("runs/x/supernet-mos-layer")
    assert lay.checkpoint == Path("runs/x/supernet/ckpt.pt") and lay.weights == Path("runs/x/supernet/model.safetensors")
    assert lay.latency_table == Path("runs/x/latency.parquet")
    assert lay.predictors == Path("runs/x/predictors") and lay.predictor() == Path("runs/x/predictors/latency.json")
    assert lay.predictor("accuracy") == Path("runs/x/predictors/accuracy.json")
    assert lay.study_db == Path("runs/x/study.db") and lay.storage_url == "sqlite:///runs/x/study.db"
    assert lay.rank_report == Path("runs/x/rank/report.json") and lay.rank_dir == Path("runs/x/rank")
    assert lay.oneshot_result("darts", 3) == Path("runs/x/oneshot/darts-seed3.json")
    assert lay.exported_trial(7) == Path("runs/x/export/trial-7")
    assert RunLayout("runs/x") == lay and isinstance(RunLayout("runs/x").root, Path)  # a str root is a Path
    with pytest.raises(dataclasses.FrozenInstanceError):
        lay.root = Path("elsewhere")  # type: ignore[misc]


def test_default_storage_url_is_the_run_folders_study_db():
    assert default_storage_url(Path("/tmp/r"), "ignored") == "sqlite:////tmp/r/study.db"
    assert default_storage_url(None, "mine") == f"sqlite:///{DEFAULT_RUNS_DIR / 'mine' / 'study.db'}"
    assert RunLayout.named("a", "/data") == RunLayout(Path("/data/a"))


def test_trained_weights_prefer_final_weights_over_the_checkpoint(tmp_path):
    lay = RunLayout(tmp_path)
    assert not lay.has_trained_supernet() and lay.trained_weights() == lay.checkpoint
    lay.supernet.mkdir()
    assert not lay.has_trained_supernet()  # an empty folder is no trained supernet
    lay.checkpoint.write_bytes(b"c")
    assert lay.has_trained_supernet() and lay.trained_weights() == lay.checkpoint
    lay.weights.write_bytes(b"w")
    assert lay.trained_weights() == lay.weights


def test_experiment_storage_and_tables_use_the_layout(tmp_path):
    from archlab.experiment import Experiment
    from archlab.predictors.table import LatencyTable
    from archlab.search.storage import storage_url
    from archlab.spaces.library import mlp_space
    from archlab.supernets.tasks import DigitsTask

    exp = Experiment("lay", mlp_space(n_layer=(1, 1), width=(8,)), family="mlp", task=DigitsTask(), runs_dir=tmp_path,
                     supernet_args={"sharing": "entangled"})
    assert exp.layout == RunLayout(tmp_path / "lay") and exp.run_dir == tmp_path / "lay"
    assert exp.supernet_dir() == exp.supernet_dir("entangled") == exp.layout.supernet
    assert exp.supernet_dir("mos-layer") == tmp_path / "lay" / "supernet-mos-layer"
    exp.run_dir.mkdir()
    assert storage_url(exp.run_dir) == exp.layout.storage_url  # a run folder means its study.db
    assert LatencyTable(exp.run_dir).path == exp.layout.latency_table
