"""Input preprocessing recorded with an exported subnet, and applied when it is loaded.

A task describes what it does to its raw inputs before a model sees them
(``Task.preprocessing()``, a JSON dict); ``save_subnet`` stores that dict in ``config.json``
under ``"preprocessing"`` and ``load_subnet`` wraps the subnet with the matching module, so the
loaded model takes the inputs as the data source gives them (e.g. digits pixel values 0..16).

Kinds (``PREPROCESSORS``):

- ``standardize``: ``((x * scale) - mean) / std`` element-wise, then reshaped to
  ``(batch, *shape)`` (image tasks: ``shape`` is ``[C, H, W]``; ``(N, H, W)`` or flat
  ``(N, C*H*W)`` raw inputs are accepted).
- ``char_vocab``: the character vocabulary of a text task (``vocab``: character ``i`` is
  token ``i``). Models take token ids, so nothing is applied; encode text with it yourself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from archlab.core.errors import ArchlabError


def _number(spec: Mapping[str, Any], key: str, positive: bool = False) -> float:
    value = spec.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ArchlabError(f"preprocessing.{key}: expected a finite number, got {value!r}")
    if positive and not value > 0:
        raise ArchlabError(f"preprocessing.{key}: must be > 0, got {value!r}")
    return float(value)


class Standardize(nn.Module):
    """``((x * scale) - mean) / std``, reshaped to ``(batch, *shape)`` when ``shape`` is given."""

    def __init__(self, mean: float, std: float, scale: float = 1.0, shape: list[int] | None = None) -> None:
        super().__init__()
        self.mean, self.std, self.scale = float(mean), float(std), float(scale)
        self.shape = [int(s) for s in shape] if shape else None

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Standardize:
        shape = spec.get("shape")
        if shape is not None and (not isinstance(shape, list) or not shape
                                  or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
            raise ArchlabError(f"preprocessing.shape: expected a list of positive integers, got {shape!r}")
        return cls(_number(spec, "mean"), _number(spec, "std", positive=True),
                   _number(spec, "scale", positive=True) if "scale" in spec else 1.0, shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float() * self.scale - self.mean) / self.std
        if self.shape is not None and x.dim() >= 1:
            per_row = math.prod(self.shape)
            if x[0].numel() != per_row:
                raise ArchlabError(f"input: {tuple(x.shape)} does not hold {per_row} values per example "
                                   f"(expected (batch, {', '.join(map(str, self.shape))}) or flat)")
            x = x.reshape(x.shape[0], *self.shape)
        return x

    def extra_repr(self) -> str:
        return f"scale={self.scale:g}, mean={self.mean:.6g}, std={self.std:.6g}, shape={self.shape}"


#: kind -> the module that applies it to raw inputs (``None``: recorded for reference only)
PREPROCESSORS: dict[str, type[nn.Module] | None] = {"standardize": Standardize, "char_vocab": None}


def check_preprocessing(spec: Any) -> dict[str, Any] | None:
    """``spec`` checked (a dict with a known ``kind``) and returned, or ``None``."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or spec.get("kind") not in PREPROCESSORS:
        kind = spec.get("kind") if isinstance(spec, Mapping) else spec
        raise ArchlabError(f"preprocessing.kind: unknown {kind!r}; allowed: {', '.join(PREPROCESSORS)}")
    cls = PREPROCESSORS[spec["kind"]]
    if cls is not None:
        cls.from_spec(spec)  # type: ignore[attr-defined]  # raises on a bad field
    return dict(spec)


def make_preprocessor(spec: Mapping[str, Any] | None) -> nn.Module | None:
    """The module applying ``spec`` to raw inputs, or ``None`` when nothing is to be applied."""
    spec = check_preprocessing(spec)
    if spec is None:
        return None
    cls = PREPROCESSORS[spec["kind"]]
    return None if cls is None else cls.from_spec(spec)  # type: ignore[attr-defined]


class WithPreprocessing(nn.Module):
    """A loaded subnet behind its recorded input preprocessing: ``forward(raw) =
    subnet(preprocess(raw))``. ``subnet`` is the bare module (it takes preprocessed inputs);
    ``meta`` and ``preprocessing`` are the saved dicts."""

    def __init__(self, subnet: nn.Module, preprocess: nn.Module, spec: Mapping[str, Any]) -> None:
        super().__init__()
        self.preprocess, self.subnet = preprocess, subnet
        self.preprocessing = dict(spec)
        self.meta: dict[str, Any] = dict(getattr(subnet, "meta", {}) or {})
        self.family = getattr(subnet, "family", "")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.subnet(self.preprocess(x))


__all__ = ["PREPROCESSORS", "Standardize", "WithPreprocessing", "check_preprocessing", "make_preprocessor"]
