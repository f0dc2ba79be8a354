"""The bad-input corpus (``tests/bad_inputs.py``): each case runs the real command line and
must give exactly one stderr line ``archlab: error: ...`` naming what is wrong, exit status 2,
and no traceback. Most run in-process (``archlab.cli.main``) for speed; a few run as real
processes, to show the same line comes out of ``python -m archlab``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bad_inputs import CASES, EXPERIMENT_PY, GOOD_ARCH, SPACE_PY, Case

from archlab.cli import main

SUBPROCESS_CASES = ("arch-deep-100000", "arch-not-utf8", "predictor-score-pickle-renamed", "checkpoint-pickle-with-code",
                    "experiment-batch-size-1e12", "predictor-show-nan-weights", "table-latency-1e308")


def test_the_corpus_is_large_and_its_ids_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 150
    kinds = {c.id.split("-")[0] for c in CASES}
    assert {"arch", "space", "experiment", "checkpoint", "weights", "predictor", "table", "storage"} <= kinds
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"`tests/bad_inputs.py`, {len(CASES)} damaged" in readme  # README quotes the real count


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """The good files the cases damage: a space, an experiment with a 2-step trained supernet,
    a latency table of the space's architectures and a ridge predictor fitted on it."""
    import numpy as np
    import pandas as pd

    from archlab.cli.space import load_space
    from archlab.predictors import LatencyPredictor

    w = tmp_path_factory.mktemp("world")
    (w / "space.py").write_text(SPACE_PY)
    (w / "exp.py").write_text(EXPERIMENT_PY.replace("RUNS", repr(str(w / "runs"))))
    (w / "arch.json").write_text(json.dumps({"n_layer": 1, "layers": [{"width": 16}]}))
    assert main(["train", str(w / "exp.py")]) == 0
    space = load_space(f"{w / 'space.py'}:space")
    archs = space.sample_many(30, seed=0)
    archs[1] = space.validate(GOOD_ARCH)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"arch": [a.to_json() for a in archs], "latency_ms": 1.0 + rng.random(len(archs))})
    frame.to_csv(w / "latency.csv", index=False)
    p = LatencyPredictor(space, model="ridge", seed=0).fit(archs, frame["latency_ms"].to_numpy())
    p.save(w / "latency.json")
    return w


def materialise(case: Case, world: Path, folder: Path) -> list[str]:
    for name, content in case.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content(world) if callable(content) else content
        if isinstance(data, str):
            path.write_text(data, encoding="utf-8")
        else:
            path.write_bytes(data)
    return [a.replace("{w}", str(world)).replace("{t}", str(folder)) for a in case.argv]


def check(case: Case, code: int, err: str) -> None:
    assert "Traceback" not in err, err[-3000:]
    lines = err.strip().splitlines()
    assert code == 2, (code, err[-2000:])
    assert len(lines) == 1, err[-2000:]
    assert lines[0].startswith("archlab: error: "), lines[0]
    for want in case.expect:
        assert want in lines[0], (want, lines[0])


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_error_line_and_exit_2(case, world, tmp_path, capsys):
    argv = materialise(case, world, tmp_path)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    check(case, code, capsys.readouterr().err)


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_bad_input_as_a_real_process(case_id, world, tmp_path):
    case = next(c for c in CASES if c.id == case_id)
    argv = materialise(case, world, tmp_path)
    env = {**os.environ, "ARCHLAB_PROGRESS": "0"}
    env.pop("ARCHLAB_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "archlab", *argv], capture_output=True, text=True, env=env,
                          timeout=120)
    check(case, proc.returncode, proc.stderr)


@pytest.mark.parametrize(("exc", "line"), [
    (RecursionError("maximum recursion depth exceeded"), "input nested too deeply: RecursionError: maximum recursion"),
    (b"\xff".decode, "input is not UTF-8 text: UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff"),
    (OverflowError("int too large to convert to float"), "a number in the input is too large: OverflowError: int too"),
    (MemoryError(), "out of memory (is an input or setting absurdly large?): MemoryError"),
])
def test_input_faults_from_deep_inside_are_one_line_but_bugs_keep_their_traceback(exc, line, monkeypatch, capsys):
    import archlab.cli.space as space_cli

    def fail(args):
        if callable(exc):
            exc()  # raises the real UnicodeDecodeError
        raise exc

    monkeypatch.setattr(space_cli, "cmd_show", fail)
    assert main(["space", "show", "x.py"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(f"archlab: error: {line}"), err
    monkeypatch.setattr(space_cli, "cmd_show", lambda args: {}["a genuine bug"])
    with pytest.raises(KeyError):
        main(["space", "show", "x.py"])
