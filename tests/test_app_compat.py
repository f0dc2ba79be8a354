"""The dashboard's boundaries: storages stay readable by optuna-dashboard, no torch on the app's
path, and a non-editable install carries every page script."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from archlab.app.demo import make_demo_study
from archlab.search import load_trials, pareto_front, run_search
from archlab.spaces.library import mlp_space

ROOT = Path(__file__).resolve().parents[1]
SPACE = mlp_space(n_layer=(1, 3), width=(16, 32, 64, 128))


def _width(a) -> float:
    return float(sum(layer["width"] for layer in a["layers"]))


def _get(app, path: str) -> tuple[str, dict]:
    """GET ``path`` from a WSGI app: (status line, JSON body)."""
    from wsgiref.util import setup_testing_defaults

    environ: dict = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda s, _headers, _exc=None: status.append(s)))
    return status[0], json.loads(body)


def test_optuna_dashboard_reads_an_archlab_search_storage(tmp_path):
    dashboard = pytest.importorskip("optuna_dashboard")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    run_search(SPACE, {"error": ("min", lambda a: 1.0 / _width(a) + 0.01 * a["n_layer"]), "size": ("min", _width)},
               n_trials=14, storage=url, study_name="search", seed=0, sampler="random",
               constraints={"size": 200}, metrics={"depth": lambda a: float(a["n_layer"])})
    make_demo_study(url, "demo", 40, seed=3, fail_fraction=0.2)  # failed trials too
    app = dashboard.wsgi(url)
    status, body = _get(app, "/api/studies")
    assert status.startswith("200")
    studies = {s["study_name"]: s for s in body["study_summaries"]}
    assert set(studies) == {"search", "demo"}
    for name in ("search", "demo"):
        df = load_trials(url, name)
        status, detail = _get(app, f"/api/studies/{studies[name]['study_id']}")
        assert status.startswith("200"), detail
        assert detail["name"] == name
        assert detail["directions"] == [o["direction"] for o in df.attrs["objectives"]]
        trials = sorted(detail["trials"], key=lambda t: t["number"])
        assert [t["number"] for t in trials] == df["number"].tolist()
        assert [t["state"].upper() for t in trials] == df["state"].tolist()
        for t, (_, row) in zip(trials, df.iterrows()):
            if row["state"] == "COMPLETE":
                np.testing.assert_allclose([float(v) for v in t["values"]],
                                           row[[o["name"] for o in df.attrs["objectives"]]].astype(float))
            assert {p["name"] for p in t["params"]} == {c.removeprefix("arch.") for c in df.columns
                                                       if c.startswith("arch.") and row[c] == row[c]}
        # its front ignores constraints (Optuna's unconstrained front), so it is a superset of ours
        best = {t["number"] for t in detail["best_trials"]}
        ours = set(pareto_front(df.assign(feasible=df["state"] == "COMPLETE"))["number"])
        assert ours <= best and best
    # the study archlab wrote is still what archlab reads, after optuna-dashboard opened it
    assert len(load_trials(url, "search")) == 14


def test_app_never_imports_torch_and_starts_quickly(tmp_path):
    path = tmp_path / "study.db"
    make_demo_study(path, "demo", 60, seed=2)
    code = textwrap.dedent(f"""
        import os, sys, time
        t = time.perf_counter()
        from archlab.cli import main
        assert main(["app", "--print-command", {str(path)!r}]) == 0
        cli = time.perf_counter() - t
        from archlab.app.serve import warm_up
        warm_up()  # what the server runs as it starts: torch-free too
        os.environ["ARCHLAB_APP_TARGET"] = {str(path)!r}
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file({str(ROOT / "app" / "main.py")!r}, default_timeout=120)
        t = time.perf_counter()
        at.run()
        first = time.perf_counter() - t
        for page in ("pareto", "hypervolume", "compare", "detail", "importance", "predictors", "live"):
            at.switch_page(f"views/{{page}}.py").run()
            assert not at.exception, (page, [e.value for e in at.exception])
        print("TIMES", round(cli, 3), round(first, 3))
        print("TORCH", "torch" in sys.modules, sorted(m for m in sys.modules if m.startswith("archlab.supernets")))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if line.startswith(("TIMES", "TORCH")))
    assert lines["TORCH"] == "False []"
    cli, first = (float(x) for x in lines["TIMES"].split())
    print(f"archlab app command line {cli:.2f} s, first page {first:.2f} s")  # the goals live in bench/


@pytest.mark.slow
def test_non_editable_install_carries_the_page_scripts(tmp_path):
    import shutil

    # build from a clean copy: setuptools reuses ./build, where an old build may hide a missing file
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "runs", "test-artifacts", "__pycache__", ".*_cache"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(src)], check=True, capture_output=True, timeout=600)
    installed = target / "archlab" / "app"
    from archlab.app.ui import PAGES

    for rel in ["main.py", *PAGES.values()]:
        assert (installed / rel).is_file(), f"{rel} is missing from a non-editable install"
    # the installed command line points Streamlit at the installed main.py
    code = "from archlab.cli.app import streamlit_command; print(streamlit_command('x', '127.0.0.1', 1)[4])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(target), "PATH": ""}, check=True)
    assert Path(out.stdout.strip()) == installed / "main.py"
