"""The house's import direction, enforced on the source (every import, top-level or lazy).

core <- spaces <- supernets <- predictors <- search <- app, with ``archlab/`` (experiment,
command line) on top. ``app`` never imports torch, ``supernets`` or ``predictors``;
``spaces`` and ``core`` never import torch or optuna; nothing below ``archlab/`` imports the
command line or the experiment.
"""

from __future__ import annotations

import ast

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


def _imported_names(source: str, module: str) -> list[tuple[int, str]]:
    """Absolute names a module's source imports (relative imports resolved against `module`)."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
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


def violations(folder: str, module: str, source: str) -> list[str]:
    """Every import in `source` (module `module`, living in `folder`) that breaks the rules."""
    found = []
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
    ],
)
def test_checker_catches_an_added_upward_import(folder, module, source, expected):
    found = violations(folder, module, source)
    assert found and any(expected in v for v in found), found


def test_checker_accepts_downward_imports():
    source = "from archlab.spaces import Arch\nfrom ..supernets import base\nimport numpy\n"
    assert violations("predictors", "archlab.predictors.x", source) == []


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
