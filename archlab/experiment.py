"""``Experiment``: one search-space experiment in a user's Python file.

An experiment bundles a search space, a supernet family and its arguments, a task and the
training settings, plus the plain-dict settings of the later stages (``profile``,
``search``). Every stage reads and writes files under ``exp.run_dir`` (``runs/<name>/``).

>>> exp = load_experiment("digits_cnn")          # a bundled example, or "my_exp.py[:NAME]"
>>> net = exp.build_supernet()                   # untrained
>>> net = exp.load_supernet()                    # trained, from runs/<name>/supernet/

The search package never sees an experiment: ``exp.metric_sources()`` and
``exp.search_settings()`` turn it into what ``archlab.search.run_search`` takes
(``archlab.searching`` runs an experiment's search with them).
"""

from __future__ import annotations

import hashlib
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archlab.core.errors import ArchlabError
from archlab.core.layout import RunLayout
from archlab.spaces import SearchSpace

if TYPE_CHECKING:
    from archlab.supernets import Supernet

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _train_config(value: Any) -> Any:
    from archlab.supernets.training.config import TrainConfig

    if value is None:
        return TrainConfig()
    if isinstance(value, dict):
        return TrainConfig.from_dict(value)
    if not isinstance(value, TrainConfig):
        raise ArchlabError(f"train: expected a TrainConfig or a dict of its fields, got {type(value).__name__}")
    return value


@dataclass
class Experiment:
    """A search-space experiment.

    ``name`` names the run directory ``runs_dir/name``; ``space`` the ``SearchSpace``;
    ``family`` a name in ``archlab.supernets.FAMILIES``; ``task`` an
    ``archlab.supernets.tasks.Task``; ``supernet_args`` extra constructor arguments of the
    family (``sharing`` included); ``train`` a ``TrainConfig`` (or a dict of its fields);
    ``profile`` / ``search`` plain settings read by those stages. ``source_file`` and
    ``source_sha256`` (set by ``load_experiment``) name the Python file the experiment came from
    and the SHA-256 of its bytes; a search records them so ``archlab export`` can check that
    it is given the same experiment.
    """

    name: str
    space: SearchSpace
    family: str
    task: Any
    supernet_args: dict[str, Any] = field(default_factory=dict)
    train: Any = None
    profile: dict[str, Any] = field(default_factory=dict)
    search: dict[str, Any] = field(default_factory=dict)
    runs_dir: str | Path = "runs"
    source_file: str | None = field(default=None, repr=False, compare=False)
    source_sha256: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        from archlab.supernets.families import FAMILIES
        from archlab.supernets.tasks.base import Task

        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            raise ArchlabError(f"name: {self.name!r} must be a non-empty file-name-safe string (letters, digits, _ . -)")
        if not isinstance(self.space, SearchSpace):
            raise ArchlabError(f"space: expected a SearchSpace, got {type(self.space).__name__}")
        if self.family not in FAMILIES:
            raise ArchlabError(f"family: unknown {self.family!r}; allowed: {', '.join(FAMILIES)}")
        if not isinstance(self.task, Task):
            raise ArchlabError(f"task: expected an archlab.supernets.tasks Task, got {type(self.task).__name__}")
        for key in ("supernet_args", "profile", "search"):
            if not isinstance(getattr(self, key), dict):
                raise ArchlabError(f"{key}: expected a dict, got {type(getattr(self, key)).__name__}")
        self.train = _train_config(self.train)
        self.runs_dir = Path(self.runs_dir)

    # locations --------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        """``runs_dir / name``: where every stage of this experiment keeps its files."""
        return self.layout.root

    @property
    def layout(self) -> RunLayout:
        """The run folder's paths (``archlab.core.layout.RunLayout`` of ``runs_dir / name``)."""
        return RunLayout.named(self.name, self.runs_dir)

    @property
    def sharing(self) -> str:
        """The experiment's weight-sharing mode (``supernet_args["sharing"]``, default entangled)."""
        return str(self.supernet_args.get("sharing", "entangled"))

    def supernet_dir(self, sharing: str | None = None) -> Path:
        """``run_dir/supernet`` for the experiment's own sharing mode, ``run_dir/supernet-<sharing>``
        for another one (so several sharing modes of one experiment can be compared)."""
        return self.layout.supernet_for(None if sharing == self.sharing else sharing)

    # supernets --------------------------------------------------------------------
    def supernet_kwargs(self, sharing: str | None = None) -> dict[str, Any]:
        """Constructor arguments: ``task.model_kwargs()`` the family accepts, then
        ``supernet_args``, then ``sharing`` (when given)."""
        from archlab.supernets.families import FAMILIES

        cls = FAMILIES[self.family]
        params = inspect.signature(cls.__init__).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        kwargs = {k: v for k, v in self.task.model_kwargs().items() if takes_any or k in params}
        kwargs.update(self.supernet_args)
        if sharing is not None:
            kwargs["sharing"] = sharing
        return kwargs

    def build_supernet(self, sharing: str | None = None) -> Supernet:
        """A fresh (untrained) supernet of ``family`` over ``space`` for ``task``, its initial
        weights drawn with ``train.seed`` (same seed, same weights)."""
        import torch

        from archlab.supernets.families import FAMILIES

        cls = FAMILIES[self.family]
        # initial weights follow TrainConfig.seed; the caller's global RNG is left as it was
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.train.seed)
            try:
                return cls(self.space, **self.supernet_kwargs(sharing))
            except TypeError as exc:
                raise ArchlabError(f"supernet_args: {exc}") from None

    def load_supernet(self, sharing: str | None = None, run_dir: str | Path | None = None) -> Supernet:
        """The trained supernet from ``supernet_dir(sharing)`` (final weights, else the last
        checkpoint); its config must match this experiment's (space, sharing, dims)."""
        from archlab.supernets.training.trainer import load_weights

        folder = self.supernet_dir(sharing) if run_dir is None else Path(run_dir) / self.supernet_dir(sharing).name
        net = self.build_supernet(sharing)
        load_weights(folder, net)  # into ``net``
        return net

    def train_supernet(self, steps: int | None = None, sharing: str | None = None,
                       run_dir: str | Path | None = None, force_config: bool = False, **overrides: Any) -> Any:
        """Train (or resume) the supernet into ``supernet_dir(sharing)``; ``steps`` and other
        ``TrainConfig`` fields override ``self.train``; ``force_config`` resumes a checkpoint
        trained with other settings. Returns the ``TrainResult``."""
        from archlab.supernets.training.trainer import train

        cfg = self.train.replace(**({"steps": steps} if steps is not None else {}), **overrides)
        folder = self.supernet_dir(sharing) if run_dir is None else Path(run_dir) / self.supernet_dir(sharing).name
        net = self.build_supernet(sharing)
        return train(net, self.task, cfg, folder, force_config=force_config)

    # search -------------------------------------------------------------------------
    def metric_sources(self, experiment_file: str | None = None) -> Any:
        """``archlab.search.MetricSources`` of this experiment: the trained supernet
        (``load_supernet``), a fresh one (``build_supernet``), the task, the family's dimensions
        (``task.model_kwargs()`` then ``supernet_args``) for the analytic cost models, the
        study name and what the study records (name, ``experiment_file``, the file's SHA-256)."""
        from archlab.search.metric_sources import MetricSources

        return MetricSources(
            supernet=self.load_supernet, untrained=self.build_supernet, task=self.task,
            model_kwargs={**self.task.model_kwargs(), **self.supernet_args}, name=self.name,
            provenance={"experiment": self.name, "experiment_file": experiment_file,
                        "experiment_sha256": self.source_sha256})

    def search_settings(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """``run_search`` keyword arguments from ``self.search`` plus non-None ``overrides``
        (``archlab.search.settings.search_settings`` with this task's metric and space)."""
        from archlab.search.settings import search_settings

        name, direction = getattr(self.task, "metric", None), getattr(self.task, "metric_direction", None)
        metric = (str(name), str(direction)) if name is not None and direction is not None else None
        return search_settings(self.search, overrides, task_metric=metric, space=self.space,
                               where="experiment.search")


EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"


def example_names() -> list[str]:
    """Names of the bundled example experiments (``digits_cnn``, ``char_transformer``, ...)."""
    return sorted(p.stem for p in EXAMPLES_DIR.glob("*.py") if not p.stem.startswith("_"))


def experiment_source(spec: str) -> tuple[Path, str]:
    """``(file, name)`` of ``FILE.py[:NAME]`` or a bundled example name, without importing
    anything (``name`` is ``""`` when not given)."""
    path, _, name = spec.partition(":")
    if not path.endswith(".py") and not Path(path).exists():
        if path in example_names():
            return EXAMPLES_DIR / f"{path}.py", name
        raise ArchlabError(f"{path}: not a Python file or a bundled example; examples: {', '.join(example_names())}")
    return Path(path), name


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (the identity of an experiment file)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        raise ArchlabError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def load_experiment(spec: str) -> Experiment:
    """An ``Experiment`` from ``FILE.py[:NAME]`` (its single Experiment, or the one named),
    or the name of a bundled example (``digits_cnn``, ``char_transformer``). The result's
    ``source_file`` / ``source_sha256`` name the file and hash what was imported."""
    from archlab.loading import load_object

    file, name = experiment_source(spec)
    digest = file_sha256(file) if file.is_file() else None
    exp = load_object(str(file) + (f":{name}" if name else ""), Experiment, "experiment")
    exp.source_file, exp.source_sha256 = str(file.resolve()), digest
    return exp


__all__ = ["Experiment", "example_names", "experiment_source", "file_sha256", "load_experiment"]
