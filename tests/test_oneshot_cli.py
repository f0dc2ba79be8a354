"""``archlab search EXPERIMENT --method ...``: one-shot results land in the study storage."""

from __future__ import annotations

import json
import textwrap

import pytest

from archlab.search import load_trials

pytestmark = pytest.mark.usefixtures("one_thread")


def _experiment(tmp_path) -> str:
    path = tmp_path / "exp.py"
    path.write_text(textwrap.dedent(f"""
        from archlab import Experiment
        from archlab.spaces.library import mlp_space
        from archlab.supernets.tasks import DigitsTask

        def width(a):
            return float(sum(layer["width"] for layer in a["layers"]))

        exp = Experiment("os", mlp_space(n_layer=(1, 2), width=(16, 32)), family="mlp", task=DigitsTask(),
                         search={{"sampler": "random", "seed": 0,
                                  "objectives": {{"size": ("min", width),
                                                  "depth": ("max", lambda a: float(a["n_layer"]))}}}},
                         runs_dir={str(tmp_path / 'runs')!r})
    """))
    return str(path)


def test_cli_method_lands_final_and_path_archs_as_trials_beside_sampler_trials(tmp_path, run_cli):
    exp = _experiment(tmp_path)
    code, out, err = run_cli("search", exp, "--trials", "2")
    assert code == 0, err
    code, out, err = run_cli("search", exp, "--method", "gdas", "--method-option", "steps=6",
                             "--method-option", "batch_size=16", "--method-option", "history_every=1",
                             "--seed", "1")
    assert code == 0, err
    assert out.startswith("gdas: ") and "history" in out
    result = json.loads((tmp_path / "runs" / "os" / "oneshot" / "gdas-seed1.json").read_text())
    assert result["method"] == "gdas" and len(result["history"]) == 6
    df = load_trials(f"sqlite:///{tmp_path / 'runs' / 'os' / 'study.db'}", "os")
    oneshot = df[df["method"] == "oneshot:gdas"]
    path_keys = {json.dumps(json.loads(h["arch"]), sort_keys=True) for h in result["history"]}
    assert len(oneshot) == len(path_keys) and (oneshot["state"] == "COMPLETE").all()
    assert {json.dumps(json.loads(a), sort_keys=True) for a in oneshot["arch"]} == path_keys
    final = json.dumps(result["arch"], sort_keys=True)
    assert final in {json.dumps(json.loads(a), sort_keys=True) for a in oneshot["arch"]}
    assert df["method"].isna().sum() >= 2  # the sampler's trials stay, without a method
    assert df.loc[df["method"] == "oneshot:gdas", "size"].notna().all()


def test_cli_unknown_method_and_bad_option_exit_2_with_one_line(tmp_path, run_cli):
    exp = _experiment(tmp_path)
    code, _, err = run_cli("search", exp, "--method", "enas")
    assert code == 2 and "unknown 'enas'" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("search", exp, "--method", "darts", "--method-option", "stepz=3")
    assert code == 2 and "unknown setting 'stepz'" in err and len(err.strip().splitlines()) == 1
