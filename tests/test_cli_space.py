"""`archlab space show|check` and the command line's error contract."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

SPACE_FILE = textwrap.dedent(
    """
    from archlab.spaces import Choice, IntRange, PerLayer, SearchSpace
    from archlab.spaces.library import mobilenet_v3_space

    space = SearchSpace("demo", n_layer=IntRange(1, 3), d_model=Choice(64, 128),
                        layers=PerLayer("n_layer", ffn=Choice(128, 256)))
    ofa = mobilenet_v3_space()
    """
)


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / "spaces_here.py"
    path.write_text(SPACE_FILE)
    return path


def test_show_prints_parameters_size_extremes_and_a_sample(run_cli, space_file):
    code, out, _ = run_cli("space", "show", f"{space_file}:space")
    assert code == 0
    assert "size:      28\n" in out  # 2 * (2 + 4 + 8)
    assert "smallest:  n_layer=1 d_model=64 ffn=[128]" in out
    assert "largest:   n_layer=3 d_model=128 ffn=[256,256,256]" in out
    assert "layers: per layer x n_layer (up to 3)" in out
    assert "sample:" in out and "(seed 0)" in out


def test_show_huge_space_uses_exact_count(run_cli, space_file):
    code, out, _ = run_cli("space", "show", f"{space_file}:ofa")
    assert code == 0
    assert f"{7371**5:,}" in out


def test_check_accepts_valid_and_rejects_invalid_archs(run_cli, space_file, tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"n_layer": 2, "d_model": 64, "layers": [{"ffn": 128}, {"ffn": 256}]}))
    code, out, _ = run_cli("space", "check", f"{space_file}:space", str(good))
    assert code == 0 and out.startswith("ok: ")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"n_layer": 2, "d_model": 64, "layers": [{"ffn": 128}, {"ffn": 300}]}))
    code, out, err = run_cli("space", "check", f"{space_file}:space", str(bad))
    assert code == 2 and out == ""
    assert err == "archlab: error: layers[1].ffn: 300 is not allowed; allowed: 128, 256\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["space", "show", "missing.py:space"], "missing.py: no such file"),
        (["space", "show", "{file}:nope"], "has no 'nope'; search spaces in it: ofa, space"),
        (["space", "show", "{file}"], "defines 2 search spaces (ofa, space); name one as"),
        (["space", "check", "{file}:space", "{tmp}/none.json"], "none.json: no such file"),
        (["space", "check", "{file}:space", "{tmp}/notjson.json"], "architecture is not valid JSON"),
    ],
)
def test_bad_input_prints_one_line_and_exits_2(args, message, space_file, tmp_path, archlab_bin):
    (tmp_path / "notjson.json").write_text("{nope")
    argv = [a.format(file=space_file, tmp=tmp_path) for a in args]
    proc = subprocess.run([*archlab_bin, *argv], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith("archlab: error: ") and message in lines[0]


def test_errors_inside_the_users_file_are_one_line(tmp_path, archlab_bin):
    broken = tmp_path / "broken.py"
    broken.write_text("from archlab.spaces import Choice\nx = Choice()\n")
    proc = subprocess.run([*archlab_bin, "space", "show", f"{broken}:x"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"archlab: error: {broken}: Choice() needs at least one value"


def test_every_subcommand_has_help(archlab_bin):
    from archlab.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert "space" in sub.choices
    for name in sub.choices:
        proc = subprocess.run([*archlab_bin, name, "--help"], capture_output=True, text=True)
        assert proc.returncode == 0, (name, proc.stderr)
        assert f"usage: archlab {name}" in proc.stdout


def test_help_does_not_import_torch():
    code = "import sys; from archlab.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
