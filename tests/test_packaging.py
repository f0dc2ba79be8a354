"""Packaging: `pip install .` gives `archlab.<folder>` and no stray top-level modules."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT

FOLDERS = ("spaces", "supernets", "predictors", "search", "app")


def test_spaces_imports_no_torch_or_optuna():
    code = "import sys, archlab.spaces, archlab.spaces.library; print(sorted(m for m in ('torch', 'optuna', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_python_package_folder_is_listed_in_pyproject():
    import tomllib

    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(conf["packages"])
    mapping = conf["package-dir"]
    for pkg, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            assert ".".join((pkg, *rel)) in listed, f"{init} is not listed in pyproject packages"


@pytest.mark.slow
def test_non_editable_install_works_from_any_directory(tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(ROOT)],
        check=True,
        capture_output=True,
    )
    top = {p.name for p in target.iterdir()}
    for folder in FOLDERS:
        assert folder not in top, f"a top-level module {folder!r} was installed"
    assert "archlab" in top
    code = (
        "import archlab, archlab.spaces, archlab.supernets, archlab.predictors, archlab.search, archlab.app;"
        "print(archlab.spaces.__file__)"
    )
    env = {"PYTHONPATH": str(target), "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(target / "archlab" / "spaces"))
