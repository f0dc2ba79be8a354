"""The type check of the public API: ``mypy`` over the installed package ``archlab``.

Settings live in pyproject's ``[tool.mypy]``; ``scripts/typecheck.py`` lays the package out
for mypy and reports errors with the checkout's paths. The first run on a clean cache takes
about 30 s of CPU; later runs reuse ``.mypy_cache`` and take a few seconds.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT

SCRIPT = ROOT / "scripts" / "typecheck.py"


def _typecheck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, check=False)


def test_package_type_checks_clean() -> None:
    proc = _typecheck()
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mypy found type errors:\n{report}"
    assert "Success: no issues found" in report


def test_a_type_error_fails_with_its_line(tmp_path) -> None:
    # the checker is live: a wrongly typed call in a checked module is reported with the
    # checkout's path and line, and the exit status is not 0
    bad = tmp_path / "bad.py"
    bad.write_text("from archlab.core.stats import bootstrap_ci\n\nbootstrap_ci([1.0], level='high')\n")
    proc = _typecheck(str(bad))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "bad.py:3: error:" in proc.stdout
    assert '"level"' in proc.stdout and "[arg-type]" in proc.stdout


@pytest.mark.parametrize("line, expected", [
    ("archlab/spaces/arch.py:12: error: x  [arg-type]", "spaces/arch.py:12: error: x  [arg-type]"),
    ("archlab/experiment.py:3: note: y", "archlab/experiment.py:3: note: y"),
    ("Found 2 errors in 1 file", "Found 2 errors in 1 file"),
])
def test_report_paths_are_the_checkout_s(line: str, expected: str) -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import typecheck
    finally:
        sys.path.pop(0)
    typecheck.build_tree()
    assert typecheck.checkout_path(line) == expected


def test_syntax_newer_than_python_3_10_fails(tmp_path) -> None:
    # quotes reused inside an f-string parse only on Python >= 3.12; mypy's native parser let
    # one through into app/views/detail.py, so the check uses the interpreter's parser
    bad = tmp_path / "fstring.py"
    bad.write_text('study = None\ncmd = f"{study or ""}"\n')
    proc = _typecheck(str(bad))
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "fstring.py:2: error:" in proc.stdout and "[syntax]" in proc.stdout
