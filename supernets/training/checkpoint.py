"""Training checkpoints: one ``ckpt.pt`` written atomically, read with ``weights_only=True``.

A checkpoint holds the model, optimizer, scheduler and AMP-scaler states, the number of
completed steps, the RNG states and ``net.config()`` (family, space, dims, sharing), so a
checkpoint of another space or sharing mode is refused with a clear message.
"""

from __future__ import annotations

import io
import json
import os
import random
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from archlab.core.errors import ArchlabError
from archlab.core.io import atomic_write_bytes

if TYPE_CHECKING:
    from ..base import Supernet

FORMAT = "archlab-checkpoint"
VERSION = 1


class CheckpointError(ArchlabError):
    """A checkpoint is unreadable, truncated, or belongs to another model."""


class NonFiniteError(CheckpointError):
    """A state about to be saved holds NaN or inf tensors."""


def rng_state() -> dict[str, Any]:
    """The global RNG states: torch CPU (and CUDA), numpy's legacy global and Python's."""
    # the legacy (default) form is a tuple; numpy's stubs type the call as that tuple or a dict
    np_state = cast(tuple[Any, ...], np.random.get_state())
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "python": json.dumps(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what ``rng_state`` returned."""
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    py = json.loads(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_finite(payload: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Raise ``NonFiniteError`` when a model or optimizer tensor of ``payload`` holds NaN/inf."""
    from .runguard import first_non_finite

    for part in ("model", "optimizer"):
        bad = first_non_finite(payload.get(part, {}))
        if bad is not None:
            raise NonFiniteError(f"{path}: not written: {part} tensor {bad} holds NaN or inf "
                                 "(training diverged); the previous checkpoint is kept")


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Write ``payload`` (model/optimizer/... states, ``net_config``, ``step``) atomically.

    A payload whose model or optimizer tensors hold NaN/inf is refused (``NonFiniteError``)
    before anything is written, so it never replaces a good checkpoint."""
    check_finite(payload, path)
    body = dict(payload)
    body["format"], body["version"] = FORMAT, VERSION
    body["net_config"] = json.dumps(body["net_config"], sort_keys=True)
    buf = io.BytesIO()
    torch.save(body, buf)
    atomic_write_bytes(path, buf.getvalue())


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``); ``CheckpointError`` if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol warning: the error below says it
            warnings.simplefilter("ignore")
            body = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = " ".join(str(exc).split())[:160]
        raise CheckpointError(f"{path}: unreadable checkpoint (truncated or corrupt file): {reason}") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an archlab checkpoint")
    if body.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {body.get('version')!r}, this archlab reads {VERSION}")
    if not isinstance(body.get("model"), dict):
        raise CheckpointError(f"{path}: not an archlab checkpoint (no 'model' state)")
    try:
        body["net_config"] = json.loads(body["net_config"])
    except (KeyError, TypeError, ValueError, RecursionError):
        raise CheckpointError(f"{path}: damaged checkpoint ('net_config' is not the model's JSON config)") from None
    if not isinstance(body["net_config"], dict):
        raise CheckpointError(f"{path}: damaged checkpoint ('net_config' is not an object)")
    return body


def read_json(path: str | os.PathLike[str], what: str) -> Any:
    """Parse the JSON file ``path``; ``CheckpointError`` naming it (and ``what`` it should be)
    when it is not UTF-8 JSON (binary, cut, too deeply nested)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except RecursionError:
        raise CheckpointError(f"{path}: not a {what} (JSON nested too deeply)") from None
    except ValueError as exc:  # UnicodeDecodeError, JSONDecodeError
        raise CheckpointError(f"{path}: not a {what} (not UTF-8 JSON: {' '.join(str(exc).split())[:100]})") from None


def _space_label(cfg: dict[str, Any]) -> str:
    space: Any = cfg.get("space")  # JSON; None is caught below like any other bad value
    try:
        from archlab.spaces import SearchSpace

        s = SearchSpace.from_json(space)
        return f"{s.name!r} (fingerprint {s.fingerprint})"
    except Exception:
        return repr(space)[:80]


def check_compatible(saved: dict[str, Any], current: dict[str, Any], where: str) -> None:
    """Raise ``CheckpointError`` naming the first difference between two ``net.config()``s."""
    if saved == current:
        return
    if saved.get("family") != current.get("family"):
        raise CheckpointError(f"{where}: checkpoint is for model family {saved.get('family')!r}, "
                              f"the model is {current.get('family')!r}")
    if _space_label(saved) != _space_label(current) or saved.get("space") != current.get("space"):
        raise CheckpointError(f"{where}: checkpoint is for another search space: {_space_label(saved)}, "
                              f"the model's is {_space_label(current)}")
    for key in ("sharing", "sharing_options", "roles"):
        if saved.get(key) != current.get(key):
            raise CheckpointError(f"{where}: checkpoint has {key}={saved.get(key)!r}, "
                                  f"the model has {key}={current.get(key)!r}")
    diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    k = diff[0]
    raise CheckpointError(f"{where}: checkpoint has {k}={saved.get(k)!r}, the model has {k}={current.get(k)!r}")


def load_model_state(net: Supernet, body: dict[str, Any], where: str) -> None:
    """Check ``body['net_config']`` against ``net.config()`` and load the weights."""
    check_compatible(body["net_config"], net.config(), where)
    from .runguard import first_non_finite

    bad = first_non_finite(body["model"])
    if bad is not None:
        raise CheckpointError(f"{where}: model tensor {bad} holds NaN or inf; this checkpoint cannot be used")
    try:
        net.load_state_dict(body["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{where}: weights do not fit the model: {' '.join(str(exc).split())[:200]}") from None
