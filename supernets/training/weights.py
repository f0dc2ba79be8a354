"""The trained supernet's files: ``model.safetensors`` + ``config.json`` (final weights) and
``ckpt.pt`` (the training checkpoint), written and read safely."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archlab.core.errors import ArchlabError
from archlab.core.io import atomic_write_bytes, atomic_write_json
from archlab.core.layout import CHECKPOINT_NAME as CKPT_NAME
from archlab.core.layout import WEIGHTS_NAME

from . import checkpoint as ckpt
from . import runguard

if TYPE_CHECKING:
    from ..base import Supernet

CONFIG_NAME = "config.json"


def save_weights(net: Supernet, out_dir: str | os.PathLike[str], meta: Mapping[str, Any] | None = None) -> None:
    """Write ``model.safetensors`` (the state dict; tied tensors stored once each) and
    ``config.json`` (``net.config()`` under ``"net"``, plus ``meta``), atomically."""
    from safetensors.torch import save

    out = Path(out_dir)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}
    bad = runguard.first_non_finite(tensors)
    if bad is not None:
        raise ckpt.NonFiniteError(f"{out / WEIGHTS_NAME}: not written: tensor {bad} holds NaN or inf")
    atomic_write_bytes(out / WEIGHTS_NAME, save(tensors))
    atomic_write_json(out / CONFIG_NAME, {"net": net.config(), **dict(meta or {})})


def load_weights(out_dir: str | os.PathLike[str], net: Supernet | None = None) -> Supernet:
    """The trained supernet in ``out_dir``: final weights if present, else the checkpoint.
    With ``net`` given, load into it (its config must match); otherwise rebuild from config."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from ..base import Supernet

    out = Path(out_dir)
    cfg_path, w_path, c_path = out / CONFIG_NAME, out / WEIGHTS_NAME, out / CKPT_NAME
    if cfg_path.is_file() and w_path.is_file():
        saved = ckpt.read_json(cfg_path, "supernet config")
        if not isinstance(saved, dict) or not isinstance(saved.get("net"), dict):
            raise ckpt.CheckpointError(f"{cfg_path}: not an archlab supernet config")
        if net is None:
            net = Supernet.from_config(saved["net"])
        ckpt.check_compatible(saved["net"], net.config(), str(w_path))
        try:
            state = load_file(str(w_path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ckpt.CheckpointError(f"{w_path}: unreadable weights (truncated or corrupt file): {exc}") from None
        bad = runguard.first_non_finite(state)
        if bad is not None:
            raise ckpt.CheckpointError(f"{w_path}: tensor {bad} holds NaN or inf; these weights cannot be used")
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise ckpt.CheckpointError(f"{w_path}: weights do not fit the model: {' '.join(str(exc).split())[:200]}") from None
        return net
    if c_path.is_file():
        body = ckpt.read_checkpoint(c_path)
        if net is None:
            net = Supernet.from_config(body["net_config"])
        ckpt.load_model_state(net, body, str(c_path))
        return net
    raise ArchlabError(f"{out}: no trained supernet here ({WEIGHTS_NAME} or {CKPT_NAME}); train it first")
