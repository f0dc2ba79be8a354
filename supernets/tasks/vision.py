"""Image classification tasks: scikit-learn's digits (default) and MNIST IDX files by path."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import Batch, Task, TaskError, check_split, stratified_split

IDX_IMAGES = 0x00000803  # unsigned bytes, 3 dimensions (n, rows, cols)
IDX_LABELS = 0x00000801  # unsigned bytes, 1 dimension (n,)


class ImageTask(Task):
    """Classification of in-memory images ``(N, C, H, W)`` with integer labels.

    The split is stratified and seeded (``val_fraction`` of every class to validation);
    pixels are standardised with the training split's mean and standard deviation. With
    ``flatten=True`` inputs are ``(B, C*H*W)`` vectors (for MLPs); models whose
    ``example_input`` is 2-D get them flattened anyway.
    """

    kind = "image"
    metric = "val_accuracy"
    metric_direction = "max"
    eval_batch_size = 512

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, val_fraction: float, seed: int,
                 flatten: bool, source: str) -> None:
        self.val_fraction = float(val_fraction)
        self.seed = int(seed)
        self.flatten = bool(flatten)
        self.source = source
        x = torch.as_tensor(np.asarray(images, dtype=np.float32))
        if x.dim() == 3:
            x = x[:, None]
        y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        train_idx, val_idx = stratified_split(y.tolist(), self.val_fraction, self.seed)
        if len(train_idx) == 0 or len(val_idx) == 0:
            raise TaskError(f"{source}: too few images ({len(y)}) for a train/validation split")
        mean = x[train_idx].mean()
        std = x[train_idx].std().clamp_min(1e-6)
        x = (x - mean) / std
        if self.flatten:
            x = x.flatten(1)
        self.mean, self.std = float(mean), float(std)
        self.input_scale = 1.0  # raw value -> the value standardised (MNIST: 1/255)
        self.num_classes = int(y.max()) + 1
        self.in_channels, self.image_size = int(images.shape[1] if images.ndim == 4 else 1), int(images.shape[-1])
        self._x = {"train": x[train_idx].contiguous(), "val": x[val_idx].contiguous()}
        self._y = {"train": y[train_idx].contiguous(), "val": y[val_idx].contiguous()}

    def model_kwargs(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes, "in_channels": self.in_channels, "image_size": self.image_size,
                "in_features": self.in_channels * self.image_size * self.image_size}

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "val_fraction": self.val_fraction, "seed": self.seed,
                "flatten": self.flatten, "num_classes": self.num_classes,
                "n_train": self.num_examples("train"), "n_val": self.num_examples("val")}

    def preprocessing(self) -> dict[str, Any]:
        """``standardize``: raw pixels ``x`` -> ``(x * scale - mean) / std`` with the training
        split's mean and std, shaped ``(N, C, H, W)``."""
        return {"kind": "standardize", "scale": self.input_scale, "mean": self.mean, "std": self.std,
                "shape": [self.in_channels, self.image_size, self.image_size]}

    def num_examples(self, split: str) -> int:
        return len(self._y[check_split(split)])

    def batch(self, split: str, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        split = check_split(split)
        idx = torch.randint(0, len(self._y[split]), (int(batch_size),), generator=generator)
        return self._x[split][idx], self._y[split][idx]

    def examples(self, split: str, index: torch.Tensor) -> Batch:
        split = check_split(split)
        return self._x[split][index], self._y[split][index]

    def eval_batches(self, split: str = "val", max_batches: int | None = None,
                     batch_size: int | None = None) -> list[Batch]:
        split = check_split(split)
        bs = int(batch_size or self.eval_batch_size)
        out = list(zip(self._x[split].split(bs), self._y[split].split(bs)))
        return out if max_batches is None else out[: int(max_batches)]


class DigitsTask(ImageTask):
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes); ships with
    scikit-learn, so no download. 10% of each class (seeded) is the validation split."""

    kind = "digits"

    def __init__(self, val_fraction: float = 0.1, seed: int = 0, flatten: bool = False) -> None:
        from sklearn.datasets import load_digits

        d = load_digits()
        super().__init__(d.images.astype(np.float32), d.target, val_fraction=val_fraction, seed=seed,
                         flatten=flatten, source="sklearn digits")


def _open(path: Path) -> Any:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: str | os.PathLike[str], expect: int) -> np.ndarray:
    """Read an IDX file (optionally gzipped) of unsigned bytes; ``expect`` is its magic number."""
    path = Path(path)
    try:
        with _open(path) as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise TaskError(f"{path}: no such IDX file") from None
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise TaskError(f"{path}: malformed IDX file (cannot decompress: {exc})") from None
    if len(raw) < 4:
        raise TaskError(f"{path}: malformed IDX file (only {len(raw)} bytes)")
    (magic,) = struct.unpack(">I", raw[:4])
    if magic != expect:
        raise TaskError(f"{path}: malformed IDX file (magic number {magic:#010x}, expected {expect:#010x})")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise TaskError(f"{path}: malformed IDX file (header cut short)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    n = int(np.prod(dims))
    if len(raw) - header != n:
        raise TaskError(f"{path}: malformed IDX file (dimensions {list(dims)} need {n} bytes of data, "
                        f"found {len(raw) - header})")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


class MNISTTask(ImageTask):
    """MNIST-format IDX files in directory ``path`` (``*-images-idx3-ubyte[.gz]`` with their
    ``*-labels-idx1-ubyte[.gz]``; every pair found is used), split into train/validation
    (stratified, seeded). Images are 28x28, one channel."""

    kind = "mnist"

    def __init__(self, path: str | os.PathLike[str], val_fraction: float = 0.1, seed: int = 0,
                 flatten: bool = False) -> None:
        root = Path(path)
        if not root.is_dir():
            raise TaskError(f"{root}: no such MNIST directory")
        image_files = sorted(p for p in root.iterdir() if "-images-idx3-ubyte" in p.name)
        if not image_files:
            raise TaskError(f"{root}: no MNIST image file (*-images-idx3-ubyte[.gz]) in the directory")
        xs, ys = [], []
        for img in image_files:
            lab = img.with_name(img.name.replace("-images-idx3-ubyte", "-labels-idx1-ubyte"))
            if not lab.is_file():
                raise TaskError(f"{lab}: missing label file for {img.name}")
            x = read_idx(img, IDX_IMAGES)
            y = read_idx(lab, IDX_LABELS)
            if len(x) != len(y):
                raise TaskError(f"{lab}: {len(y)} labels for {len(x)} images in {img.name}")
            if len(y) and int(y.max()) > 9:
                raise TaskError(f"{lab}: label {int(y.max())} out of range 0..9")
            xs.append(x)
            ys.append(y)
        self.path = root
        images = np.concatenate(xs).astype(np.float32) / 255.0
        super().__init__(images, np.concatenate(ys), val_fraction=val_fraction, seed=seed, flatten=flatten,
                         source=str(root))
        self.num_classes = max(self.num_classes, 10)
        self.input_scale = 1.0 / 255.0  # the IDX bytes were divided by 255 before standardising
