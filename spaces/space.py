"""``SearchSpace``: named parameters, per-layer blocks and constraints over ``Arch``."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from . import encoding as _enc
from . import optuna_bridge as _opt
from .arch import Arch
from .cells import CellGraph
from .errors import SpaceError
from .params import Choice, Param, PerLayer, block_from_json, check_block, count_values

SPACE_FORMAT = 1


@dataclass(frozen=True)
class Constraint:
    """A named predicate over an ``Arch``: ``fn(arch)`` is truthy when the arch is allowed."""

    name: str
    fn: Callable[[Arch], object]

    def __call__(self, arch: Arch) -> bool:
        return bool(self.fn(arch))


# a space's constraints: Constraint objects, (name, fn) pairs or named functions, or {name: fn};
# fn(arch) is truthy when the arch is allowed
ConstraintSpec: TypeAlias = (
    "Mapping[str, Callable[[Arch], object]]"
    " | Iterable[Constraint | tuple[str, Callable[[Arch], object]] | Callable[[Arch], object]] | None"
)


def _constraints(spec: ConstraintSpec) -> tuple[Constraint, ...]:
    if spec is None:
        return ()
    items: list[Constraint] = []
    pairs: Iterable[Any] = spec.items() if isinstance(spec, Mapping) else spec
    for item in pairs:
        if isinstance(item, Constraint):
            c = item
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            c = Constraint(item[0], item[1])
        elif callable(item):
            name = getattr(item, "__name__", "")
            if not name or name == "<lambda>":
                raise SpaceError(
                    "a constraint needs a name: pass a named function, a (name, fn) pair or a "
                    "{name: fn} mapping instead of a lambda",
                    "constraints",
                )
            c = Constraint(name, item)
        else:
            raise SpaceError(f"{item!r} is not a constraint; allowed: a callable, (name, fn) or Constraint", "constraints")
        if not callable(c.fn):
            raise SpaceError(f"constraint {c.name!r} is not callable", "constraints")
        if any(c.name == o.name for o in items):
            raise SpaceError(f"duplicate constraint name {c.name!r}", "constraints")
        items.append(c)
    return tuple(items)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _order(block: Mapping[str, Param], values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: values[k] for k in block}


def _count(p: PerLayer, scope: Mapping[str, Any]) -> int:
    return p.count if isinstance(p.count, int) else int(scope[p.count])


class SearchSpace:
    """A search space: named parameters (``Choice``, ``IntRange``, ``FloatRange``, ``PerLayer``).

    >>> space = SearchSpace("tiny", n_layer=IntRange(1, 3), d_model=Choice(64, 128),
    ...                     layers=PerLayer("n_layer", ffn=Choice(128, 256)))
    >>> space.size
    28

    ``constraints`` are named callables over an ``Arch`` (a ``{name: fn}`` mapping, named
    functions, or ``Constraint`` objects); ``sample`` draws until all hold and ``validate``
    rejects archs that break one. ``size`` and ``enumerate`` count the unconstrained space.
    """

    def __init__(self, name: str, constraints: ConstraintSpec = (), **params: Param) -> None:
        if not isinstance(name, str) or not name:
            raise SpaceError("a search space needs a non-empty name", "name")
        self.name = name
        self.params: dict[str, Param] = check_block(params)
        self.constraints: tuple[Constraint, ...] = _constraints(constraints)
        self._layout: _enc.Layout | None = None
        self.graph: CellGraph | None = None

    def with_graph(self, graph: CellGraph | None) -> SearchSpace:
        """Declare the space a cell with this DAG (``archlab.spaces.cells``; ``cell_space`` does it);
        returns the space."""
        if graph is not None:
            edges = self.params.get(graph.edges)
            op = edges.params.get(graph.op) if isinstance(edges, PerLayer) else None
            choices = [str(v) for v in op.values()] if isinstance(op, Choice) else []
            # n_edges is arithmetic: a received space JSON with a huge n_nodes is refused, not enumerated
            if not isinstance(edges, PerLayer) or edges.count != graph.n_edges or sorted(choices) != sorted(graph.ops):
                raise SpaceError(f"cell graph: {graph.edges!r} must be a PerLayer of {graph.n_edges} edges with "
                                 f"{graph.op!r} in {list(graph.ops)}", graph.edges)
        self.graph = graph
        return self

    def structure_features(self, archs: Iterable[Mapping[str, Any]]) -> np.ndarray:
        """Features from the space's declared structure (a cell's live-edge encoding, see
        ``archlab.spaces.cells``); ``(n, 0)`` when it declares none."""
        archs = list(archs)
        return self.graph.features(archs) if self.graph is not None else np.zeros((len(archs), 0))

    def cost_features(self, archs: Iterable[Mapping[str, Any]]) -> np.ndarray:
        """Features of what an architecture runs, for a model of its cost (a cell's operations
        per kind, live or dead: ``archlab.spaces.cells``); ``(n, 0)`` when the space declares no
        structure."""
        archs = list(archs)
        return self.graph.cost_features(archs) if self.graph is not None else np.zeros((len(archs), 0))

    # checking ---------------------------------------------------------------------
    def validate(self, mapping: Mapping[str, Any] | str, check_constraints: bool = True) -> Arch:
        """Check a mapping (or JSON text) against the space; return the canonical ``Arch``.

        Raises ``SpaceError`` naming the exact field (``stages[2].blocks[1].kernel``) and what
        is allowed there.
        """
        if isinstance(mapping, str):
            mapping = Arch.from_json(mapping)
        arch = Arch(self._validate_block(self.params, mapping, ""))
        if check_constraints:
            broken = self.violated(arch)
            if broken:
                raise SpaceError(f"architecture violates constraint {broken[0]!r}", "constraints")
        return arch

    def _validate_block(self, block: Mapping[str, Param], value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise SpaceError(
                f"expected an object with keys {', '.join(block)}, got {type(value).__name__}",
                path or "arch",
            )
        for k in value:
            if k not in block:
                raise SpaceError(f"unknown key; allowed keys here: {', '.join(block)}", _join(path, str(k)))
        for k in block:
            if k not in value:
                p = block[k]
                raise SpaceError(f"missing; allowed: {p.allowed()}", _join(path, k))
        out: dict[str, Any] = {}
        for k, p in block.items():
            if not isinstance(p, PerLayer):
                out[k] = p.validate(value[k], _join(path, k))
        for k, p in block.items():
            if isinstance(p, PerLayer):
                n = _count(p, out)
                seq = value[k]
                where = _join(path, k)
                if not isinstance(seq, (list, tuple)):
                    raise SpaceError(f"expected a list of {n} blocks, got {type(seq).__name__}", where)
                if len(seq) != n:
                    why = f" ({p.count}={n})" if isinstance(p.count, str) else ""
                    raise SpaceError(f"expected {n} blocks{why}, got {len(seq)}", where)
                out[k] = [self._validate_block(p.params, s, f"{where}[{i}]") for i, s in enumerate(seq)]
        return _order(block, out)

    def violated(self, arch: Arch) -> list[str]:
        """Names of the constraints ``arch`` breaks (empty when it is feasible)."""
        return [c.name for c in self.constraints if not c(arch)]

    def is_feasible(self, arch: Arch) -> bool:
        return not self.violated(arch)

    # sampling ---------------------------------------------------------------------
    def sample(self, seed_or_rng: int | np.random.Generator | None = None, max_tries: int = 1000) -> Arch:
        """Draw one architecture uniformly per parameter (depth first, then each layer).

        ``seed_or_rng`` is an int seed or a ``numpy.random.Generator``; the same seed gives
        the same architecture. Constraints are met by rejection, at most ``max_tries`` draws.
        """
        rng = seed_or_rng if isinstance(seed_or_rng, np.random.Generator) else np.random.default_rng(seed_or_rng)
        for _ in range(max_tries):
            arch = Arch(self._sample_block(self.params, rng))
            if not self.constraints or self.is_feasible(arch):
                return arch
        counts = ", ".join(f"{c.name!r}" for c in self.constraints)
        raise SpaceError(
            f"constraints ({counts}) rejected all {max_tries} samples; loosen them or raise max_tries",
            "constraints",
        )

    def _sample_block(self, block: Mapping[str, Param], rng: np.random.Generator) -> dict[str, Any]:
        out = {k: p.sample(rng) for k, p in block.items() if not isinstance(p, PerLayer)}
        for k, p in block.items():
            if isinstance(p, PerLayer):
                out[k] = [self._sample_block(p.params, rng) for _ in range(_count(p, out))]
        return _order(block, out)

    def sample_many(self, n: int, seed: int | None = None, unique: bool = True) -> list[Arch]:
        """``n`` architectures from one seeded stream; distinct when ``unique`` (the default)."""
        rng = np.random.default_rng(seed)
        out: list[Arch] = []
        seen: set[str] = set()
        tries = 0
        while len(out) < n:
            arch = self.sample(rng)
            tries += 1
            if unique and arch.key in seen:
                if tries > 100 * n + 1000:
                    raise SpaceError(f"could not draw {n} distinct architectures (the space may be smaller)")
                continue
            seen.add(arch.key)
            out.append(arch)
        return out

    # counting ---------------------------------------------------------------------
    @property
    def is_discrete(self) -> bool:
        return all(p.is_discrete for p in self.params.values())

    @property
    def size(self) -> int:
        """Exact number of architectures (conditional depth included, constraints ignored)."""
        return self._block_size(self.params, "")

    def _block_size(self, block: Mapping[str, Param], path: str) -> int:
        total = 1
        refs = {p.count for p in block.values() if isinstance(p, PerLayer) and isinstance(p.count, str)}
        for k, p in block.items():
            if not p.is_discrete and not isinstance(p, PerLayer):
                raise SpaceError("is continuous, so the space has no finite size", _join(path, k))
            if not isinstance(p, PerLayer) and k not in refs:
                total *= p.n_values()
        for k, p in block.items():
            if isinstance(p, PerLayer) and isinstance(p.count, int):
                total *= self._block_size(p.params, _join(path, k)) ** p.count
        for ref in refs:
            inner = [
                self._block_size(p.params, _join(path, k))
                for k, p in block.items()
                if isinstance(p, PerLayer) and p.count == ref
            ]
            # sum over the depths n of prod(inner sizes ** n): exact integers, depths <= MAX_LAYERS
            per_depth = math.prod(inner)
            total *= sum(per_depth**n for n in block[ref].values())
        return total

    def enumerate(self, limit: int = 100_000) -> Iterator[Arch]:
        """Every feasible architecture, in a fixed order; refuses spaces above ``limit``."""
        size = self.size
        if size > limit:
            raise SpaceError(f"has {size:,} architectures, more than limit={limit:,}; sample instead", "enumerate")
        for d in self._enum_block(self.params):
            arch = Arch(d)
            if not self.constraints or self.is_feasible(arch):
                yield arch

    def _enum_block(self, block: Mapping[str, Param]) -> Iterator[dict[str, Any]]:
        scalars = [k for k, p in block.items() if not isinstance(p, PerLayer)]
        layers = {k: p for k, p in block.items() if isinstance(p, PerLayer)}
        inner = {k: list(self._enum_block(p.params)) for k, p in layers.items()}
        for combo in itertools.product(*(block[k].values() for k in scalars)):
            base = dict(zip(scalars, combo))
            seqs = [
                itertools.product(inner[k], repeat=_count(p, base))
                for k, p in layers.items()
            ]
            for chosen in itertools.product(*seqs):
                out = dict(base)
                out.update({k: list(s) for k, s in zip(layers, chosen)})
                yield _order(block, out)

    def smallest(self) -> Arch:
        """Every ordered parameter at its lowest value (depths included); categorical
        choices at their ``default`` (the first value unless ``Choice(..., default=V)``)."""
        return Arch(self._extreme(self.params, "low", ""))

    def largest(self) -> Arch:
        """Every ordered parameter at its highest value (depths included); categorical
        choices at their ``default``."""
        return Arch(self._extreme(self.params, "high", ""))

    def _extreme(self, block: Mapping[str, Param], which: str, path: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, p in block.items():
            if not isinstance(p, PerLayer):
                try:
                    out[k] = p.extreme(which)
                except SpaceError as exc:
                    raise SpaceError(exc.reason, _join(path, k)) from None
        for k, p in block.items():
            if isinstance(p, PerLayer):
                where = _join(path, k)
                out[k] = [self._extreme(p.params, which, f"{where}[{i}]") for i in range(_count(p, out))]
        return _order(block, out)

    # encoding ---------------------------------------------------------------------
    @property
    def layout(self) -> _enc.Layout:
        if self._layout is None:
            self._layout = _enc.Layout(self.params)
        return self._layout

    @property
    def encoding_size(self) -> int:
        """Width of ``encode(arch)``."""
        return self.layout.size

    def feature_names(self) -> list[str]:
        """Names of the entries of ``encode(arch)`` (``layers.3.present``, ``act=relu``, ...)."""
        return list(self.layout.names)

    def encode(self, arch: Mapping[str, Any], normalized: bool = False) -> np.ndarray:
        """Fixed-width float32 vector: per-layer slots padded to the maximum depth with presence
        masks, categories one-hot. With ``normalized=True`` numbers are scaled to [0, 1] by
        their parameter's range (log ranges on a log scale)."""
        return self.layout.encode(arch, normalized)

    def encode_many(self, archs: Iterable[Mapping[str, Any]], normalized: bool = False) -> np.ndarray:
        """``(n, encoding_size)`` float32 matrix of ``encode`` rows."""
        rows = [self.layout.encode(a, normalized) for a in archs]
        return np.stack(rows) if rows else np.zeros((0, self.encoding_size), np.float32)

    def decode(self, vector: npt.ArrayLike, normalized: bool = False) -> Arch:
        """Inverse of ``encode``; values snap to the nearest allowed one."""
        return self.validate(self.layout.decode(vector, normalized), check_constraints=False)

    def value_ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature ``(low, high)`` of the raw encoding (masks and one-hots: 0..1)."""
        return self.layout.low.copy(), self.layout.high.copy()

    # Optuna -----------------------------------------------------------------------
    def suggest(self, trial: _opt.SuggestTrial, fixed_width: bool = False) -> Arch:
        """Ask an Optuna trial for an architecture, with flat names like
        ``stages.2.blocks.1.kernel``. Per-layer parameters of inactive layers are not suggested
        unless ``fixed_width`` (then every slot up to the maximum depth is)."""
        return Arch(_opt.suggest_block(self.params, trial, "", fixed_width))

    def from_params(self, params: Mapping[str, Any], strict: bool = True) -> Arch:
        """The ``Arch`` for flat Optuna parameters (``trial.params``); inverse of ``to_params``.

        With ``strict`` an unknown parameter name is an error; slots beyond the active depth
        (from ``fixed_width`` suggestion) are ignored.
        """
        used: set[str] = set()
        raw = _opt.collect_block(self.params, params, "", used)
        if strict:
            allowed = set(self.param_names())
            unknown = sorted(k for k in params if k not in used and k not in allowed)
            if unknown:
                raise SpaceError(f"unknown parameter {unknown[0]!r} for space {self.name!r}", unknown[0])
        return self.validate(raw, check_constraints=False)

    def to_params(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """Flat ``{name: value}`` of an architecture (the names ``suggest`` uses)."""
        out: dict[str, Any] = {}
        _opt.flatten(self.params, arch, "", out)
        return out

    def param_names(self) -> list[str]:
        """Every flat parameter name, per-layer slots up to the maximum depth."""
        return list(_opt.all_names(self.params, ""))

    # persistence ------------------------------------------------------------------
    def to_json(self) -> str:
        """The space as JSON (constraints are code: only their names are kept)."""
        return json.dumps(
            {
                "archlab_space": SPACE_FORMAT,
                "name": self.name,
                "params": [{"name": k, **p.to_json()} for k, p in self.params.items()],
                "constraints": [c.name for c in self.constraints],
                **({"graph": self.graph.to_json()} if self.graph is not None else {}),
            }
        )

    @classmethod
    def from_json(cls, text: str | Mapping[str, Any], constraints: ConstraintSpec = ()) -> SearchSpace:
        """Rebuild a space from ``to_json``; pass ``constraints`` to re-attach them."""
        try:
            data = json.loads(text) if isinstance(text, str) else dict(text)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, huge integers, deep nesting
            raise SpaceError(f"search space is not valid JSON: {' '.join(str(exc).split())[:120]}") from None
        if not isinstance(data, dict) or data.get("archlab_space") != SPACE_FORMAT:
            raise SpaceError(f"not an archlab search space (format {SPACE_FORMAT} expected)")
        if "params" not in data:
            raise SpaceError("search space JSON has no 'params'")
        space = cls(str(data.get("name") or ""), constraints=constraints, **block_from_json(data["params"]))
        return space.with_graph(CellGraph.from_json(data["graph"])) if "graph" in data else space

    @property
    def fingerprint(self) -> str:
        """SHA-256 (16 hex digits) of the parameters' structure; equal spaces share it."""
        body = json.dumps([{"name": k, **p.to_json()} for k, p in self.params.items()], sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.fingerprint == other.fingerprint

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    # display ----------------------------------------------------------------------
    def summary(self, arch: Mapping[str, Any]) -> str:
        """A one-line summary (``n_layer=4 d_model=128 ffn=[256,512,256,128]``)."""
        return _enc.summary(self.params, arch)

    def describe(self) -> str:
        """Multi-line description of every parameter and its allowed values."""
        lines: list[str] = []

        def walk(block: Mapping[str, Param], indent: str) -> None:
            for k, p in block.items():
                if isinstance(p, PerLayer):
                    counts = count_values(block, k)
                    lines.append(f"{indent}{k}: per layer x {p.count} (up to {max(counts)})")
                    walk(p.params, indent + "  ")
                else:
                    lines.append(f"{indent}{k}: {p!r}")

        walk(self.params, "  ")
        return "\n".join(lines)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={p!r}" for k, p in self.params.items())
        return f"SearchSpace({self.name!r}, {inner})"
