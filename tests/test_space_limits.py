"""Space sizes are exact big integers computed without materialising the space, and absurd
spaces (beyond the documented limits) are refused at construction, naming the field."""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap

import pytest

from archlab.spaces import Choice, IntRange, PerLayer, SearchSpace, SpaceError
from archlab.spaces.params import MAX_BLOCKS, MAX_INT, MAX_LAYERS


def test_size_matches_enumeration_on_small_spaces():
    spaces = [
        SearchSpace("a", n=IntRange(0, 3), d=Choice(8, 16), layers=PerLayer("n", w=Choice(1, 2, 3))),
        SearchSpace("b", n=IntRange(1, 3, step=2), layers=PerLayer("n", k=Choice(3, 5), m=IntRange(0, 2),
                                                                   inner=PerLayer("m", e=Choice(1, 2)))),
        SearchSpace("c", fixed=PerLayer(2, a=Choice("x", "y"), b=IntRange(1, 2))),
    ]
    for s in spaces:
        assert s.size == sum(1 for _ in s.enumerate(limit=10**6)), s.name


def test_size_of_a_1000_layer_space_is_exact_and_fast():
    s = SearchSpace("deep", n=IntRange(0, MAX_LAYERS), layers=PerLayer("n", w=Choice(1, 2, 3)))
    assert s.size == (3 ** (MAX_LAYERS + 1) - 1) // 2  # sum of 3**n for n = 0..1000
    wide = SearchSpace("wide", x=IntRange(-MAX_INT, MAX_INT), y=IntRange(0, 10**15, step=5))
    assert wide.size == (2 * MAX_INT + 1) * (10**15 // 5 + 1)


@pytest.mark.parametrize(("make", "match"), [
    (lambda: SearchSpace("s", n=IntRange(1, 10**9), layers=PerLayer("n", w=Choice(1, 2))),
     r"^layers: count 'n' may be 1,000,000,000, above the limit of 1000 layers$"),
    (lambda: SearchSpace("s", layers=PerLayer(2000, w=Choice(1, 2))),
     r"^layers: PerLayer count 2000 is above the limit of 1000 layers$"),
    (lambda: SearchSpace("s", x=IntRange(0, 10**30)),
     r"^x: IntRange high=<an integer of 31 digits> is beyond the limit of \+-2\*\*53"),
    (lambda: SearchSpace("s", x=Choice(1, -(10**5000))),
     r"^x: Choice value <an integer of 5001 digits> is beyond the limit"),
    (lambda: SearchSpace("s", n=IntRange(1, 1000),
                         layers=PerLayer("n", m=IntRange(1, 1000), inner=PerLayer("m", w=Choice(1, 2)))),
     rf"an architecture may hold 1,001,000 blocks .* above the limit of {MAX_BLOCKS:,}$"),
])
def test_absurd_spaces_are_refused_naming_the_field(make, match):
    with pytest.raises(SpaceError, match=match):
        make()


def test_absurd_space_json_is_refused_too():
    good = SearchSpace("s", layers=PerLayer(3, w=Choice(1, 2))).to_json()
    with pytest.raises(SpaceError, match=r"^layers: PerLayer count 3000 is above the limit"):
        SearchSpace.from_json(good.replace('"count": 3', '"count": 3000'))
    with pytest.raises(SpaceError, match=r"^layers\.w: missing 'values' of a choice parameter"):
        SearchSpace.from_json(good.replace('"values"', '"valuez"'))
    with pytest.raises(SpaceError, match="search space is not valid JSON"):
        SearchSpace.from_json("[" * 100_000)


def _limited(code: str, mem_mb: int = 1500, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter capped at ``mem_mb`` of address space."""
    def cap() -> None:
        limit = mem_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=cap)


@pytest.mark.parametrize(("definition", "field"), [
    ("PerLayer('n', w=Choice(1, 2)), n=IntRange(1, 10**9)", "layers: count 'n' may be 1,000,000,000"),
    ("PerLayer(2000, w=Choice(1, 2))", "layers: PerLayer count 2000"),
    ("PerLayer(2, w=IntRange(0, 10**30))", ": w: IntRange high="),
])
def test_space_show_of_absurd_spaces_is_one_line_in_bounded_memory(tmp_path, definition, field):
    f = tmp_path / "space_def.py"
    f.write_text(f"from archlab.spaces import *\nspace = SearchSpace('s', layers={definition})\n")
    proc = _limited(f"""
        import sys
        from archlab.cli import main
        sys.exit(main(["space", "show", {str(f)!r}]))
    """)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("archlab: error:") and field in lines[0], proc.stderr


def test_space_show_of_the_largest_allowed_space_is_fast_in_bounded_memory(tmp_path):
    f = tmp_path / "space_def.py"
    f.write_text("from archlab.spaces import *\n"
                 "space = SearchSpace('big', n=IntRange(0, 1000), x=IntRange(0, 2**53),\n"
                 "    layers=PerLayer('n', w=IntRange(0, 2**50), k=Choice(3, 5, 7), inner=PerLayer(50, a=Choice(1, 2))))\n")
    proc = _limited(f"""
        import sys
        from archlab.cli import main
        sys.exit(main(["space", "show", {str(f)!r}]))
    """, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    size_line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("size:"))
    assert size_line.endswith("(30597 digits)") and "~1.190e+30596" in size_line
