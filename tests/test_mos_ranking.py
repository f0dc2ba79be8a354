"""Ranking consistency: statistics on known cases, arch sampling, cache resume, report, CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

from archlab.supernets import MLPNet
from archlab.supernets.ranking import run as rk
from archlab.supernets.ranking.run import RankError, rank_correlations, sample_archs

SPACE = MLPNet.default_space()


def test_kendall_tau_b_and_spearman_on_known_cases():
    # 5 concordant pairs, 1 discordant: tau = (5 - 1) / 6; Spearman 1 - 6*2/(4*15) = 0.8
    r = rank_correlations([1, 2, 3, 4], [1, 3, 2, 4])
    assert r["kendall_tau"] == pytest.approx(4 / 6)
    assert r["spearman"] == pytest.approx(0.8)
    # ties: nc=4, nd=0, one tie only in x, one only in y -> tau_b = 4 / sqrt(5 * 5)
    r = rank_correlations([1, 2, 2, 3], [1, 2, 3, 3])
    assert r["kendall_tau"] == pytest.approx(0.8)
    assert rank_correlations([1, 2, 3], [3, 2, 1])["kendall_tau"] == pytest.approx(-1.0)


def test_top_k_overlap_follows_the_metric_direction_and_gap_is_absolute():
    s, h = [0.1, 0.2, 0.3, 0.4], [0.2, 0.1, 0.5, 0.3]
    lo = rank_correlations(s, h, "min", top_k=2)  # best = lowest: {0,1} vs {0,1}
    assert lo["top_k_overlap"] == 1.0
    assert lo["mean_abs_gap"] == pytest.approx((0.1 + 0.1 + 0.2 + 0.1) / 4)
    hi = rank_correlations(s, h, "max", top_k=2)  # best = highest: {3,2} vs {2,3}
    assert hi["top_k_overlap"] == 1.0
    assert rank_correlations(s, h, "max", top_k=1)["top_k_overlap"] == 0.0  # 3 vs 2
    assert math.isnan(rank_correlations([1, 1, 1], [1, 2, 3])["kendall_tau"])
    with pytest.raises(RankError, match="top_k"):
        rank_correlations(s, h, top_k=5)


def test_sample_archs_is_seeded_distinct_and_has_the_extremes_when_asked():
    a = sample_archs(SPACE, 7, seed=3, extremes=True)
    assert a == sample_archs(SPACE, 7, seed=3, extremes=True)
    assert a != sample_archs(SPACE, 7, seed=4, extremes=True)
    assert len({x.key for x in a}) == 7
    assert a[0] == SPACE.largest() and a[1] == SPACE.smallest()
    with pytest.raises(RankError, match=">= 3"):
        sample_archs(SPACE, 2)


@pytest.fixture(scope="module")
def digits():
    from archlab.supernets.tasks import DigitsTask

    return DigitsTask()


def _cfg(**kw):
    from archlab.supernets.training.config import TrainConfig

    return TrainConfig(**{"steps": 4, "batch_size": 16, "lr": 3e-3, "device": "cpu", "checkpoint_every": 0,
                          "log_every": 0, "eval_batches": 1, **kw})


def _build(sharing: str) -> MLPNet:
    return MLPNet(SPACE, in_features=64, num_classes=10, sharing=sharing)


def test_standalone_cache_resumes_a_killed_run(tmp_path, digits, monkeypatch):
    archs = sample_archs(SPACE, 4, seed=0)
    calls: list[str] = []
    real = rk.train_standalone

    def counting(model, *a, **kw):
        calls.append("x")
        if len(calls) == 3 and kill:
            raise KeyboardInterrupt  # killed while training the third architecture
        return real(model, *a, **kw)

    monkeypatch.setattr(rk, "train_standalone", counting)
    cfg = _cfg()
    kill = True
    with pytest.raises(KeyboardInterrupt):
        rk.standalone_results(archs, lambda: _build("entangled"), digits, cfg, 3, tmp_path, eval_batches=1)
    assert len(list(tmp_path.glob("*.json"))) == 2
    kill, calls[:] = False, []
    first = rk.standalone_results(archs, lambda: _build("entangled"), digits, cfg, 3, tmp_path, eval_batches=1)
    assert len(calls) == 2  # only the two not cached
    calls.clear()
    again = rk.standalone_results(archs, lambda: _build("entangled"), digits, cfg, 3, tmp_path, eval_batches=1)
    assert calls == [] and again == first
    # a second training seed (multi-seed ground truth) gets files of its own: both seeds resume
    calls.clear()
    other = cfg.replace(seed=cfg.seed + 1)
    rk.standalone_results(archs, lambda: _build("entangled"), digits, other, 3, tmp_path, eval_batches=1)
    assert len(calls) == 4
    calls.clear()
    assert rk.standalone_results(archs, lambda: _build("entangled"), digits, cfg, 3, tmp_path, eval_batches=1) == first
    rk.standalone_results(archs, lambda: _build("entangled"), digits, other, 3, tmp_path, eval_batches=1)
    assert calls == []  # neither seed overwrote the other's results
    calls.clear()
    rk.standalone_results(archs[:1], lambda: _build("entangled"), digits, cfg, 4, tmp_path, eval_batches=1)
    assert len(calls) == 1  # other budget: not reused


def test_standalone_is_the_extracted_fresh_subnet_trained_deterministically(digits):
    arch = SPACE.smallest()
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = _build("entangled").extract(arch)
        outs.append(rk.train_standalone(model, digits, _cfg(), 3, eval_batches=1))
    assert outs[0]["loss"] == outs[1]["loss"] and outs[0]["train_loss"] == outs[1]["train_loss"]


@pytest.mark.slow
def test_run_ranking_writes_the_report_for_several_supernets(tmp_path, digits):
    from archlab.supernets.training.trainer import train

    trained = _build("entangled")
    train(trained, digits, _cfg(), None)
    report = rk.run_ranking(tmp_path, SPACE, digits, _cfg(), _build, sharing=["entangled", "mos-layer"],
                            n_archs=4, steps=3, supernets={"entangled": trained}, eval_batches=1)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["metric"] == digits.metric == "val_accuracy"
    assert set(saved) >= {"archs", "standalone", "supernets", "metric"}
    assert len(saved["archs"]) == 4 and set(saved["standalone"]) == set(saved["archs"])
    assert set(saved["supernets"]) == {"entangled", "mos-layer"}
    for mode, entry in saved["supernets"].items():
        assert set(entry["inherited"]) == set(saved["archs"])
        s = [saved["standalone"][k] for k in saved["archs"]]
        h = [entry["inherited"][k] for k in saved["archs"]]
        expect = rank_correlations(s, h, "max")
        assert entry["mean_abs_gap"] == pytest.approx(expect["mean_abs_gap"])
        assert entry["top_k_overlap"] == pytest.approx(expect["top_k_overlap"])
        assert entry["source"] == ("given" if mode == "entangled" else "trained here (supernets/mos-layer)")
    assert (tmp_path / "supernets" / "mos-layer" / "model.safetensors").is_file()
    assert not (tmp_path / "report.html").exists()  # the model layer draws nothing
    from archlab.rank_plot import write_plot

    html = write_plot(saved, tmp_path, SPACE).read_text()
    assert "mos-layer (tau" in html and "standalone val_accuracy" in html
    assert saved["archs"] == [a.key for a in rk.sample_archs(SPACE, 4, seed=0)]  # extremes not forced
    assert report["standalone"] == saved["standalone"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--archs", "2"], "--archs"),
        (["--steps", "0"], "--steps"),
        (["--sharing", "entangled,mos-lay"], "mos-lay"),
        (["--top-k", "9", "--archs", "4"], "--top-k"),
    ],
)
def test_cli_bad_input_exits_2(run_cli, tmp_path, args, message):
    code, _out, err = run_cli("rank", str(tmp_path / "exp.py"), *args)
    assert code == 2
    assert message in err and err.count("\n") == 1


def test_cli_missing_experiment_exits_2(run_cli, tmp_path):
    pytest.importorskip("archlab.experiment")
    code, _, err = run_cli("rank", str(tmp_path / "nope.py"), "--archs", "3")
    assert code == 2 and "nope.py" in err


def test_checkpoint_of_another_sharing_mode_is_a_clear_error(tmp_path, digits):
    from archlab.supernets.training.checkpoint import CheckpointError
    from archlab.supernets.training.trainer import load_weights, train

    train(_build("mos-layer"), digits, _cfg(steps=2, checkpoint_every=1), tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["net"]["sharing"] == "mos-layer"
    assert load_weights(tmp_path).sharing == "mos-layer"
    with pytest.raises(CheckpointError, match=r"sharing='mos-layer'.*sharing='entangled'"):
        load_weights(tmp_path, _build("entangled"))
    (tmp_path / "model.safetensors").unlink()  # resume from ckpt.pt into another mode
    with pytest.raises(CheckpointError, match="sharing"):
        train(_build("mos-neuron"), digits, _cfg(steps=3), tmp_path)


EXPERIMENT = '''
from archlab import Experiment
from archlab.spaces import IntRange, PerLayer, Choice, SearchSpace
from archlab.supernets.tasks import DigitsTask
from archlab.supernets.training.config import TrainConfig

space = SearchSpace("mini", n_layer=IntRange(1, 2), layers=PerLayer("n_layer", width=Choice(16, 32)))
experiment = Experiment(name="mini", space=space, family="mlp", task=DigitsTask(), runs_dir=RUNS,
                        train=TrainConfig(steps=3, batch_size=16, device="cpu", checkpoint_every=0,
                                          log_every=0, eval_batches=1))
'''


@pytest.mark.slow
def test_cli_rank_end_to_end_and_no_train(run_cli, tmp_path):
    pytest.importorskip("archlab.experiment")
    exp = tmp_path / "exp.py"
    exp.write_text(EXPERIMENT.replace("RUNS", repr(str(tmp_path / "runs"))))
    code, _, err = run_cli("rank", str(exp), "--archs", "3", "--sharing", "mos-neuron", "--no-train")
    assert code == 2 and "mos-neuron" in err and "--no-train" in err
    code, out, err = run_cli("rank", str(exp), "--archs", "3", "--steps", "2", "--eval-batches", "1",
                             "--sharing", "entangled,mos-neuron")
    assert code == 0, err
    rank_dir = tmp_path / "runs" / "mini" / "rank"
    report = json.loads((rank_dir / "report.json").read_text())
    assert set(report["supernets"]) == {"entangled", "mos-neuron"} and len(report["archs"]) == 3
    assert len(list((rank_dir / "standalone").glob("*.json"))) == 3
    assert (tmp_path / "runs" / "mini" / "supernet-mos-neuron" / "model.safetensors").is_file()
    assert report["supernets"]["mos-neuron"]["supernet_steps"] == 3
    assert "mos-neuron" in out and (rank_dir / "report.html").is_file()


@pytest.mark.slow
def test_cli_rank_refuses_supernets_trained_differently(run_cli, tmp_path):
    pytest.importorskip("archlab.experiment")
    exp = tmp_path / "exp.py"
    exp.write_text(EXPERIMENT.replace("RUNS", repr(str(tmp_path / "runs"))))
    args = ("rank", str(exp), "--archs", "3", "--seed", "1", "--steps", "2", "--eval-batches", "1",
            "--standalone-seeds", "2", "--sharing", "entangled,mos-layer")
    code, out, err = run_cli(*args)
    assert code == 0, err
    report = json.loads((tmp_path / "runs" / "mini" / "rank" / "report.json").read_text())
    st = report["stats"]
    assert set(st["methods"]) == {"entangled", "mos-layer"} and set(st["proxies"]) == {"params", "macs", "width", "synflow"}
    assert "minus_entangled" in st["methods"]["mos-layer"] and "ceiling" in st
    assert report["extremes"] == [] and "kendall tau" in out and "ceiling" in out
    # the mos-layer supernet is retrained with another learning rate: refused, then allowed
    cfg_path = tmp_path / "runs" / "mini" / "supernet-mos-layer" / "config.json"
    saved = json.loads(cfg_path.read_text())
    saved["train"]["lr"] = 0.01
    cfg_path.write_text(json.dumps(saved))
    code, _, err = run_cli(*args)
    assert code == 2 and "train.lr" in err and "--allow-mismatch" in err and err.count("\n") == 1
    code, out, err = run_cli(*args, "--allow-mismatch", "--with-extremes")
    assert code == 0, err
    assert "settings differ" in out and "largest and smallest" in out
    report = json.loads((tmp_path / "runs" / "mini" / "rank" / "report.json").read_text())
    assert report["settings_mismatches"] and "with_extremes" in report
    # seed 1 draws neither extreme of this space: both are added and reported apart
    assert report["extremes"] == ['{"layers":[{"width":32},{"width":32}],"n_layer":2}', '{"layers":[{"width":16}],"n_layer":1}']
    assert len(report["archs"]) == 3 and report["with_extremes"]["n_archs"] == 5
