"""The house's import direction, enforced on the source (every import, top-level or lazy).

core <- spaces <- supernets <- predictors <- search <- app, with ``archlab/`` (experiment,
command line) on top. ``app`` never imports torch, ``supernets`` or ``predictors``;
``spaces`` and ``core`` never import torch or optuna; nothing below ``archlab/`` imports the
command line or the experiment, nor uses one handed to it as a parameter named ``experiment``
(the experiment turns itself into metric sources and settings one floor up).
"""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys

import pytest
from conftest import ROOT

# folder -> rank; a module may import archlab subpackages of lower or equal rank only
RANK = {"core": 0, "spaces": 1, "supernets": 2, "predictors": 3, "search": 4, "app": 5, "archlab": 6}
SUBPACKAGE_OF = {"core": "core", "spaces": "spaces", "supernets": "supernets",
                 "predictors": "predictors", "search": "search", "app": "app"}
# third-party modules a folder must never import, not even lazily
FORBIDDEN_EXTERNAL = {
    "core": {"torch", "optuna", "sklearn", "pandas", "streamlit", "plotly"},
    "spaces": {"torch", "optuna", "sklearn", "pandas", "streamlit", "plotly"},
    "supernets": {"optuna", "streamlit", "plotly"},
    "predictors": {"optuna", "streamlit", "plotly"},
    "app": {"torch", "sklearn"},
}
# archlab subpackages a folder must never import even though they rank below it
FORBIDDEN_INTERNAL = {"app": {"supernets", "predictors"}}
TOP_ONLY = ("archlab.cli", "archlab.experiment", "archlab.demo", "archlab.examples")
# a parameter by this name is an experiment: code below archlab/ must not reach into it
EXPERIMENT_PARAMS = ("experiment",)


def _from_module(node: ast.ImportFrom, module: str) -> str:
    """The absolute module a ``from ... import`` names (relative levels resolved against ``module``)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")[: -node.level]
    return ".".join([*base, node.module] if node.module else base)


def _imported_names(source: str, module: str) -> list[tuple[int, str]]:
    """Absolute names a module's source imports (relative imports resolved against `module`)."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            name = _from_module(node, module)
            out.append((node.lineno, name))
            out += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
    return out


def _target_folder(name: str) -> str | None:
    """The folder an absolute import name lands in (None for third-party names)."""
    parts = name.split(".")
    if parts[0] != "archlab":
        return None
    if len(parts) > 1 and parts[1] in SUBPACKAGE_OF:
        return SUBPACKAGE_OF[parts[1]]
    return "archlab"


def experiment_uses(module: str, source: str) -> list[str]:
    """Every attribute of a parameter named ``experiment`` that `source` reads or calls
    (``experiment.load_supernet()``, ``experiment.task``, ``getattr(experiment, "search")``)."""
    found = []
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        a = fn.args
        params = {p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg) if p is not None}
        names = params.intersection(EXPERIMENT_PARAMS)
        if not names:
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in names:
                found.append(f"{module}:{node.lineno} uses {node.value.id}.{node.attr} (only archlab/ may use an "
                             "experiment; take metric sources or settings instead)")
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
                  and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id in names):
                found.append(f"{module}:{node.lineno} uses {node.func.id}({node.args[0].id}, ...) (only archlab/ may "
                             "use an experiment; take metric sources or settings instead)")
    return found


def violations(folder: str, module: str, source: str) -> list[str]:
    """Every import in `source` (module `module`, living in `folder`) that breaks the rules,
    and (below ``archlab/``) every use of an experiment parameter."""
    found = [] if folder == "archlab" else experiment_uses(module, source)
    for line, name in _imported_names(source, module):
        top = name.split(".")[0]
        where = f"{module}:{line} imports {name}"
        if top in FORBIDDEN_EXTERNAL.get(folder, ()):
            found.append(f"{where} ({folder} never imports {top})")
        target = _target_folder(name)
        if target is None or folder == "archlab":
            continue
        if name == "archlab" or name in ("archlab.__version__",):
            continue
        if RANK[target] > RANK[folder]:
            found.append(f"{where} (upward: {folder} may not import {target})")
        elif target in FORBIDDEN_INTERNAL.get(folder, ()):
            found.append(f"{where} ({folder} never imports {target})")
        if any(name == t or name.startswith(t + ".") for t in TOP_ONLY):
            found.append(f"{where} (only archlab/ may use the command line or the experiment)")
    return found


def _modules():
    for folder in RANK:
        if folder == "archlab":
            continue
        base = ROOT / folder
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base).with_suffix("").parts
            # relative imports in an __init__ resolve against the package itself
            yield folder, ".".join(["archlab", folder, *rel]), path


@pytest.mark.parametrize("folder", [f for f in RANK if f != "archlab"])
def test_no_upward_or_forbidden_imports(folder):
    problems = []
    for f, module, path in _modules():
        if f == folder:
            problems += violations(f, module, path.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("folder", "module", "source", "expected"),
    [
        ("supernets", "archlab.supernets.x", "from archlab.search import runner", "upward"),
        ("supernets", "archlab.supernets.x", "def f():\n    from ..search import runner", "upward"),
        ("spaces", "archlab.spaces.x", "def f():\n    import torch", "never imports torch"),
        ("app", "archlab.app.x", "from archlab.supernets import export", "never imports supernets"),
        ("search", "archlab.search.x", "from archlab.cli.search import main", "upward"),
        ("search", "archlab.search.x", "import archlab.experiment", "upward"),
        ("predictors", "archlab.predictors.x", "from ..app import main", "upward"),
        ("search", "archlab.search.x", "from archlab.experiment import Experiment", "only archlab/ may use"),
        ("search", "archlab.search.x", "def f(space, experiment=None):\n    return experiment.load_supernet()",
         "uses experiment.load_supernet"),
        ("search", "archlab.search.x", "def f(*, experiment):\n    net = experiment.task", "uses experiment.task"),
        ("app", "archlab.app.x", "g = lambda experiment: getattr(experiment, 'search', {})",
         "uses getattr(experiment, ...)"),
    ],
)
def test_checker_catches_an_added_upward_import(folder, module, source, expected):
    found = violations(folder, module, source)
    assert found and any(expected in v for v in found), found


def test_checker_accepts_downward_imports():
    source = "from archlab.spaces import Arch\nfrom ..supernets import base\nimport numpy\n"
    assert violations("predictors", "archlab.predictors.x", source) == []


def test_experiment_parameters_are_fine_on_the_top_floor_and_as_plain_text():
    uses = "def f(experiment):\n    return experiment.load_supernet()\n"
    assert violations("archlab", "archlab.searching", uses) == []
    # a parameter that only passes text along (a command to print) reaches into nothing
    text = "def report(rows, experiment: str | None = None):\n    return ['--experiment', experiment]\n"
    assert violations("search", "archlab.search.summary", text) == []


# --- no import cycles between the modules of one folder ------------------------------------
# A cycle hidden in a function-level import is still a cycle (it only moves the failure to
# run time), so lazy imports count too, except in the folders listed here with the reason.
LAZY_CYCLES_LEFT = {
    "search": "search.runner <-> search.workers (a lazy import of runner._prepare), "
              "left to the owners of the search seams (issue 16 item 1)",
}


def _resolve(name: str, known: set[str]) -> str | None:
    """The module (``pkg.__init__`` for a package) that an absolute import name lands in."""
    while name:
        for candidate in (name, f"{name}.__init__"):
            if candidate in known:
                return candidate
        name = name.rpartition(".")[0]
    return None


def import_edges(sources: dict[str, str], lazy: bool = True) -> dict[str, set[str]]:
    """module -> the modules of ``sources`` it imports (``lazy=False``: module-level imports
    only). Names as ``_modules`` gives them (a package is ``pkg.__init__``); importing a name
    from a package counts as importing the submodule of that name when there is one."""
    known = set(sources)
    edges: dict[str, set[str]] = {m: set() for m in sources}
    for module, source in sources.items():
        tree = ast.parse(source)
        for node in ast.walk(tree) if lazy else tree.body:
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [_resolve(a.name, known) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                frm = _from_module(node, module)
                for alias in node.names:
                    sub = f"{frm}.{alias.name}"
                    submodule = next((m for m in (sub, f"{sub}.__init__") if m in known), None)
                    targets.append(submodule or _resolve(frm, known))
            edges[module] |= {t for t in targets if t and t != module}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among ``edges`` (its modules in order), or None."""
    try:
        graphlib.TopologicalSorter(edges).prepare()
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None


@pytest.mark.parametrize("folder", [f for f in RANK if f != "archlab"])
def test_no_import_cycles_inside_a_folder(folder):
    sources = {module: path.read_text(encoding="utf-8") for f, module, path in _modules() if f == folder}
    cycle = find_cycle(import_edges(sources, lazy=False))
    assert cycle is None, f"module-level import cycle: {' -> '.join(cycle)}"
    if folder not in LAZY_CYCLES_LEFT:
        cycle = find_cycle(import_edges(sources, lazy=True))
        assert cycle is None, f"import cycle through a function-level import: {' -> '.join(cycle)}"


def test_cycle_check_catches_a_cycle():
    pkg = "archlab.supernets"
    sources = {
        f"{pkg}.__init__": "from .base import Supernet\n",
        f"{pkg}.base": "from . import banks\n\ndef f():\n    from .families import FAMILIES\n",
        f"{pkg}.banks": "import torch\n",
        f"{pkg}.families.__init__": "from ..base import Supernet\nfrom .mlp import MLPNet\n",
        f"{pkg}.families.mlp": "from ..banks import BankFactory\n",
    }
    assert find_cycle(import_edges(sources, lazy=False)) is None
    cycle = find_cycle(import_edges(sources, lazy=True))
    assert cycle is not None and {f"{pkg}.base", f"{pkg}.families.__init__"} <= set(cycle)
    sources[f"{pkg}.banks"] = "from archlab.supernets.families import mlp\n"  # module level now
    cycle = find_cycle(import_edges(sources, lazy=False))
    assert cycle is not None and {f"{pkg}.banks", f"{pkg}.families.mlp"} <= set(cycle)


def test_registries_are_complete_whichever_module_is_imported_first():
    """With the cycles gone, the built-ins register when their package is imported (no lazy
    "load the built-ins" fallback): a fresh interpreter that imports one low module sees them."""
    code = (
        "from archlab.predictors.models import MODELS\n"
        "from archlab.supernets.layers.banks import BANKS\n"
        "from archlab.supernets.base import FAMILIES\n"
        "from archlab.supernets.soft.ops import SOFT_FAMILIES\n"
        "print(sorted(MODELS), sorted(BANKS), sorted(FAMILIES), sorted(SOFT_FAMILIES), sep='|')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    models, banks, families, soft = out.stdout.strip().split("|")
    assert "'lut'" in models and "'ensemble'" in models
    assert banks == "['entangled', 'mos-layer', 'mos-neuron']"
    assert families == soft == "['cell', 'convnet', 'mlp', 'transformer_lm']"


# the rooms of supernets/ (ARCHITECTURE.md): a room imports rooms of lower or equal rank only
SUPERNET_ROOMS = {"layers": 0, "routers": 0, "tasks": 0, "base": 1, "soft": 2, "families": 3,
                  "export": 4, "training": 4, "ranking": 5, "__init__": 6}


def _room(module: str) -> str:
    return module.split(".")[2]  # archlab.supernets.<room>[...]


def room_violations(sources: dict[str, str]) -> list[str]:
    """Imports (lazy ones included) from a room of ``supernets`` to a higher-ranked room."""
    found = []
    for module, targets in import_edges(sources, lazy=True).items():
        for target in targets:
            a, b = _room(module), _room(target)
            if SUPERNET_ROOMS[b] > SUPERNET_ROOMS[a]:
                found.append(f"{module} imports {target} (room {a} may not import room {b})")
    return found


def test_supernet_rooms_import_downwards():
    sources = {m: p.read_text(encoding="utf-8") for f, m, p in _modules() if f == "supernets"}
    assert {_room(m) for m in sources} == set(SUPERNET_ROOMS)  # a new room gets a rank here
    assert room_violations(sources) == []
    sources["archlab.supernets.layers.banks"] += "\ndef f():\n    from ..training.optim import SliceAdamW\n"
    assert room_violations(sources) == [
        "archlab.supernets.layers.banks imports archlab.supernets.training.optim.__init__ "
        "(room layers may not import room training)"]
# Optuna internals live in one module (search/optuna_compat.py) ------------------------------
COMPAT = "archlab.search.optuna_compat"
#: folders whose code must reach Optuna's internals through COMPAT only
INTERNALS_CHECKED = ("core", "spaces", "supernets", "predictors", "search", "app", "archlab", "bench")


def optuna_private_names() -> frozenset[str]:
    """The ``_``-prefixed attribute names (dunders aside) of Optuna's study, trial, frozen
    trial and storage objects, collected from live objects of the installed Optuna."""
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        rdb = optuna.storages.RDBStorage("sqlite://")
        study = optuna.create_study(storage=rdb, sampler=optuna.samplers.RandomSampler(seed=0))
        trial = study.ask()
        trial.suggest_int("x", 0, 1)
        study.tell(trial, 1.0)
        objects = [study, trial, study.trials[0], rdb, study._storage, optuna.storages.InMemoryStorage()]
        names = {n for o in objects for n in [*dir(o), *vars(o)] if n.startswith("_") and not n.endswith("__")}
        rdb.engine.dispose()
    return frozenset(names - {"_abc_impl"})


def _is_private_optuna_module(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "optuna" and any(p.startswith("_") for p in parts[1:])


def internals_used(module: str, source: str, private: frozenset[str]) -> list[str]:
    """Every use of an Optuna internal in ``source`` outside ``COMPAT``: an import of a private
    Optuna module or name, an attribute in ``private`` read or written on anything but
    ``self`` / ``cls`` (also through ``getattr``/``setattr``/``hasattr``), or a private Optuna
    module named in a string (a logger name)."""
    if module == COMPAT:
        return []
    found = [f"{module}:{line} imports {name}" for line, name in _imported_names(source, module)
             if _is_private_optuna_module(name)]
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Attribute) and node.attr in private:
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                found.append(f"{module}:{line} uses .{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr") and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant) and node.args[1].value in private):
            found.append(f"{module}:{line} uses {node.func.id}(..., {node.args[1].value!r})")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _is_private_optuna_module(node.value):
            found.append(f"{module}:{line} names {node.value!r}")
    return found


def test_optuna_internals_only_in_the_compat_module():
    private = optuna_private_names()
    assert {"_storage", "_study_id", "_trial_id", "_backend", "_pop_waiting_trial_id"} <= private
    problems = []
    for folder in INTERNALS_CHECKED:
        base = ROOT / folder
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base).with_suffix("").parts
            module = ".".join(["archlab", *rel] if folder == "archlab" else ["archlab", folder, *rel])
            problems += internals_used(module, path.read_text(encoding="utf-8"), private)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from optuna.storages._rdb import models", "imports optuna.storages._rdb"),
        ("def f():\n    import optuna.study._optimize", "imports optuna.study._optimize"),
        ("from optuna.storages import _CachedStorage", "imports optuna.storages._CachedStorage"),
        ("def f(study):\n    return study._storage", "uses ._storage"),
        ("def f(study, pop):\n    study._pop_waiting_trial_id = pop", "uses ._pop_waiting_trial_id"),
        ("def f(trial):\n    return trial._trial_id", "uses ._trial_id"),
        ("def f(s):\n    return getattr(s, '_backend', s)", "getattr(..., '_backend')"),
        ("import logging\nlog = logging.getLogger('optuna.study._optimize')", "names 'optuna.study._optimize'"),
    ],
)
def test_internals_checker_catches_an_added_use(source, expected):
    found = internals_used("archlab.search.x", source, optuna_private_names())
    assert found and any(expected in v for v in found), found


def test_internals_checker_accepts_public_use_and_the_compat_module():
    private = optuna_private_names()
    public = ("import optuna\nclass A:\n    def f(self, study):\n        self._storage = study.study_name\n"
              "        return optuna.storages.RDBStorage, study.get_trials()\n")
    assert internals_used("archlab.search.x", public, private) == []
    assert internals_used(COMPAT, "def f(study):\n    return study._storage", private) == []
