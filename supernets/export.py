"""Save, load and export standalone subnets (the plain modules ``net.extract`` returns).

A subnet directory holds ``model.safetensors`` (the weights; no pickle) and ``config.json``
(``{"archlab_subnet": 1, "family", "arch", "dims", "meta"}``, and ``"preprocessing"``: the
task's input transform, see ``archlab.supernets.tasks.preprocess``); ``load_subnet`` rebuilds the
module from the config alone (no supernet needed), loads the weights and puts the recorded
preprocessing in front of it, so it takes raw inputs. Optionally
``weights.pt`` (a plain state dict readable with ``torch.load(..., weights_only=True)``).
``export_onnx`` writes an ONNX file when ``onnx`` is installed.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archlab.core.errors import ArchlabError
from archlab.core.io import atomic_open, atomic_write_bytes, atomic_write_json

from .families.plain import PlainSubnet, build_plain
from .tasks.preprocess import WithPreprocessing, check_preprocessing, make_preprocessor

SUBNET_FORMAT = 1
WEIGHTS = "model.safetensors"
TORCH_WEIGHTS = "weights.pt"
CONFIG = "config.json"
FORMATS = ("safetensors", "pt")


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def save_subnet(
    module: nn.Module,
    out_dir: str | os.PathLike[str],
    meta: Mapping[str, Any] | None = None,
    formats: Iterable[str] = ("safetensors",),
    preprocessing: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``module`` (a plain subnet from ``net.extract``) to ``out_dir``; returns the dir.

    Files (each written atomically): ``model.safetensors``, ``config.json`` (family, arch,
    dims and ``meta``, a JSON-able dict of your own), and ``weights.pt`` when ``formats``
    includes ``"pt"``. ``preprocessing`` (``task.preprocessing()``) is recorded in
    ``config.json`` so ``load_subnet`` can apply it to raw inputs.
    """
    if not isinstance(module, PlainSubnet):
        raise ArchlabError(
            f"save_subnet: expected a subnet from net.extract(arch) (a PlainSubnet), got {type(module).__name__}"
        )
    preprocessing = check_preprocessing(preprocessing)
    formats = tuple(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or "safetensors" not in formats:
        raise ArchlabError(f"formats: {formats!r}; allowed: {', '.join(FORMATS)} (safetensors is always written)")
    from safetensors.torch import save

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = _state(module)
    atomic_write_bytes(out / WEIGHTS, save(state, metadata={"format": "pt", "family": module.family}))
    if "pt" in formats:
        with atomic_open(out / TORCH_WEIGHTS, "wb") as fh:
            torch.save(state, fh)
    config = {"archlab_subnet": SUBNET_FORMAT, **module.subnet_config(), "meta": dict(meta or {})}
    if preprocessing is not None:
        config["preprocessing"] = preprocessing
    try:
        json.dumps(config)
    except TypeError as exc:
        raise ArchlabError(f"meta: must be JSON-serialisable ({exc})") from None
    atomic_write_json(out / CONFIG, config)
    return out


def read_subnet_config(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``config.json`` of a saved subnet, checked."""
    path = Path(out_dir) / CONFIG
    if not path.is_file():
        raise ArchlabError(f"{path}: missing; not a saved subnet directory (expected {CONFIG} and {WEIGHTS})")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArchlabError(f"{path}: not valid JSON (truncated or corrupt?): {exc}") from None
    if not isinstance(config, dict) or config.get("archlab_subnet") != SUBNET_FORMAT:
        raise ArchlabError(f"{path}: not an archlab subnet config (format {SUBNET_FORMAT} expected)")
    for key in ("family", "dims"):
        if key not in config:
            raise ArchlabError(f"{path}: missing key {key!r}")
    return config


def load_subnet(out_dir: str | os.PathLike[str], device: str | torch.device = "cpu",
                preprocess: bool = True) -> nn.Module:
    """Rebuild a saved subnet from ``out_dir`` (no supernet, no pickle); eval mode.

    Reads ``model.safetensors`` (or, when absent, ``weights.pt`` with ``weights_only=True``).
    A missing, truncated or mismatching file raises ``ArchlabError``. ``.meta`` holds the
    saved meta dict.

    When ``config.json`` records a tensor preprocessing (e.g. the digits task's
    standardisation, mean 4.89 / std 6.02 of the training pixels) and ``preprocess`` is true,
    the result is a ``WithPreprocessing`` module that takes *raw* inputs (pixel values as
    the data set gives them) and applies it; ``.subnet`` is the bare module.
    ``preprocess=False`` returns the bare module, which expects inputs already preprocessed
    the way the task's batches are. Without recorded preprocessing both are the same.
    """
    out = Path(out_dir)
    config = read_subnet_config(out)
    module = build_plain(config["family"], config["dims"], config.get("arch"))
    state = _load_state(out)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ArchlabError(f"{out}: weights do not match config.json ({first})") from None
    module.meta = config.get("meta", {})
    spec: Any = config.get("preprocessing")  # JSON; make_preprocessor checks it
    try:
        pre = make_preprocessor(spec) if preprocess else None
    except ArchlabError as exc:
        raise ArchlabError(f"{out / CONFIG}: {exc}") from None
    if pre is not None:
        return WithPreprocessing(module, pre, spec).to(device).eval()
    return module.to(device).eval()


def _load_state(out: Path) -> dict[str, torch.Tensor]:
    path = out / WEIGHTS
    if path.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load

        try:
            return load(path.read_bytes())
        except (SafetensorError, ValueError, OSError) as exc:
            raise ArchlabError(f"{path}: cannot read weights (truncated or corrupt?): {exc}") from None
    path = out / TORCH_WEIGHTS
    if path.is_file():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ArchlabError(f"{path}: cannot read weights (truncated or corrupt?): {exc}") from None
        if not isinstance(state, dict):
            raise ArchlabError(f"{path}: expected a state dict")
        return state
    raise ArchlabError(f"{out}: missing weights; expected {WEIGHTS} (or {TORCH_WEIGHTS})")


def export_onnx(
    module: nn.Module, example_input: torch.Tensor, path: str | os.PathLike[str], opset: int = 17
) -> Path:
    """Write ``module`` as ONNX to ``path`` (atomically), traced on ``example_input`` with a
    dynamic batch axis. Needs the ``onnx`` package (``pip install archlab[onnx]``)."""
    try:
        import onnx  # noqa: F401
    except ModuleNotFoundError:
        raise ArchlabError("export_onnx needs the onnx package: pip install 'archlab[onnx]'") from None
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    was_training = module.training
    module.eval()
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter needs no onnxscript
            torch.onnx.export(
                module, (example_input,), tmp, dynamo=False, opset_version=opset,
                input_names=["input"], output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            )
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        module.train(was_training)
    return target


__all__ = ["export_onnx", "load_subnet", "read_subnet_config", "save_subnet"]
