"""README: its benchmark figures are the JSON results', its commands exist."""

import importlib.util
import re

from conftest import ROOT

from archlab.cli import build_parser

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _bench_readme():
    spec = importlib.util.spec_from_file_location("bench_readme", ROOT / "bench" / "readme.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_section_is_generated_from_the_json_results():
    mod = _bench_readme()
    assert mod.splice(README, mod.render()) == README, "run: python bench/readme.py"


def test_renderer_reports_a_missing_result(tmp_path):
    mod = _bench_readme()
    text = mod.render(tmp_path)
    assert text.count("Not measured yet.") == len(mod.SECTIONS)


def test_first_two_commands_set_up_run_the_demo_and_the_tests():
    commands = re.findall(r"^(bash scripts/\S+.*?)\s+#", README, flags=re.M)
    assert commands[:2] == ["bash scripts/setup.sh && .venv/bin/archlab demo", "bash scripts/test.sh"]
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_every_command_is_in_the_readme_table():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name in sub.choices:
        assert f"| `archlab {name}" in README, name
