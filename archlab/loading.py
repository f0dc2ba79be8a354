"""Load objects from a user's Python file (``FILE.py`` or ``FILE.py:NAME``).

A user's experiment or space file is their own code, so it is imported normally; anything
that comes from others (weights, predictors, studies) is read with safe loaders elsewhere.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from archlab.core.errors import ArchlabError


def load_module(path: str | Path) -> ModuleType:
    """Import a Python file by path; errors in it become one ``ArchlabError``."""
    file = Path(path)
    if not file.is_file():
        raise ArchlabError(f"{file}: no such file")
    if file.suffix != ".py":
        raise ArchlabError(f"{file}: expected a Python file ending in .py")
    name = f"archlab_user_{abs(hash(str(file.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:  # pragma: no cover - defensive
        raise ArchlabError(f"{file}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except ArchlabError as exc:
        sys.modules.pop(name, None)
        raise ArchlabError(f"{file}: {exc}") from exc
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise ArchlabError(f"{file}: line {exc.lineno}: syntax error: {exc.msg}") from exc
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ArchlabError(f"{file}: {type(exc).__name__} while importing: {exc}") from exc
    return module


def load_object(spec: str, kind: type | tuple[type, ...], what: str) -> Any:
    """Load ``FILE.py:NAME``, or the single object of type ``kind`` in ``FILE.py``.

    ``what`` names the kind in messages ("search space", "experiment").
    """
    path, _, name = spec.partition(":")
    module = load_module(path)
    if name:
        if not hasattr(module, name):
            matches = sorted(k for k, v in vars(module).items() if isinstance(v, kind))
            hint = f"; {what}s in it: {', '.join(matches)}" if matches else ""
            raise ArchlabError(f"{path} has no {name!r}{hint}")
        obj = getattr(module, name)
        if callable(obj) and not isinstance(obj, kind) and not isinstance(obj, type):
            obj = obj()
        if not isinstance(obj, kind):
            raise ArchlabError(f"{path}:{name} is a {type(obj).__name__}, not a {what}")
        return obj
    found = {k: v for k, v in vars(module).items() if isinstance(v, kind) and not k.startswith("_")}
    if len(found) != 1:
        names = ", ".join(sorted(found)) or "none"
        raise ArchlabError(f"{path} defines {len(found)} {what}s ({names}); name one as {path}:NAME")
    return next(iter(found.values()))
