"""Safe predictor files: JSON metadata beside a safetensors file of numpy arrays.

``NAME.json`` holds the format marker, the kind (latency/accuracy), the model's metadata, the
featurizer (search space JSON, feature names, cost model), scores, a holdout
``{"y_true", "y_pred"}`` for parity plots, the SHA-256 of ``NAME.safetensors`` and a checksum
of its own body. Loading parses JSON and safetensors only (no pickle, nothing executed) and
rejects a file whose checksums, marker or structure are off with a ``PredictorError``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from archlab.core.io import atomic_write_bytes, atomic_write_text

from .errors import PredictorError

FORMAT = 1
MARKER = "archlab_predictor"


def arrays_path(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(p.stem + ".safetensors")


def _body_digest(doc: dict[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def write(path: str | Path, doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Write the arrays, then the JSON (each atomically); returns the JSON path."""
    from safetensors.numpy import save

    p = Path(path)
    if p.suffix != ".json":
        raise PredictorError(f"{p}: a predictor file name must end in .json")
    data = save({k: np.ascontiguousarray(v) for k, v in arrays.items()}) if arrays else save({"_empty": np.zeros(0)})
    apath = arrays_path(p)
    atomic_write_bytes(apath, data)
    doc = {MARKER: FORMAT, **doc, "arrays": {"file": apath.name, "sha256": hashlib.sha256(data).hexdigest()}}
    doc["checksum"] = _body_digest(doc)
    atomic_write_text(p, json.dumps(doc, indent=1) + "\n")
    return p


def peek(path: str | Path) -> Any:
    """The parsed JSON of ``path``, or None when it is not UTF-8 JSON (binary, a pickle, too
    deeply nested, an integer of over 4300 digits)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (ValueError, RecursionError, OSError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None


def read(path: str | Path, kind: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Parse and verify a predictor file written by ``write``; ``kind`` must match."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    p = Path(path)
    if not p.is_file():
        raise PredictorError(f"{p}: no such predictor file")
    doc = peek(p)
    if doc is None:
        raise PredictorError(f"{p}: not an archlab predictor file (not JSON)")
    if not isinstance(doc, dict) or MARKER not in doc:
        raise PredictorError(f"{p}: not an archlab predictor file (no {MARKER!r} marker)")
    if doc[MARKER] != FORMAT:
        raise PredictorError(f"{p}: predictor format {doc[MARKER]!r} is not supported (expected {FORMAT})")
    if doc.get("checksum") != _body_digest(doc):
        raise PredictorError(f"{p}: checksum mismatch: the file was modified or is damaged")
    if doc.get("kind") != kind:
        raise PredictorError(f"{p}: holds a {doc.get('kind')!r} predictor, not a {kind!r} one")
    info = doc.get("arrays")
    if not isinstance(info, dict) or not isinstance(info.get("file"), str) or "/" in info["file"] or "\\" in info["file"]:
        raise PredictorError(f"{p}: malformed 'arrays' entry")
    apath = p.with_name(info["file"])
    if not apath.is_file():
        raise PredictorError(f"{p}: its array file {apath.name} is missing")
    data = apath.read_bytes()
    if hashlib.sha256(data).hexdigest() != info.get("sha256"):
        raise PredictorError(f"{apath}: SHA-256 mismatch: the array file was modified or belongs to another predictor")
    try:
        arrays = load(data)
    except (SafetensorError, ValueError, OSError) as exc:
        raise PredictorError(f"{apath}: not a valid safetensors file ({exc})") from None
    arrays.pop("_empty", None)
    for name, arr in arrays.items():
        if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
            raise PredictorError(f"{apath}: array {name!r} holds NaN or inf; a fitted predictor never does "
                                 "(the file was tampered with or damaged)")
    return doc, arrays
