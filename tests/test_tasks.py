"""Tasks: character LM, digits, MNIST IDX: splits, batches, metrics and bad input."""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from archlab.supernets.tasks import (
    STDLIB_VOCAB,
    CharLMTask,
    DigitsTask,
    MNISTTask,
    TaskError,
    read_idx,
)

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "text" / "tinyshakespeare.txt"
MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


class ConstantLogits(nn.Module):
    """Predicts the same (uniform) distribution everywhere."""

    def __init__(self, classes: int, lm: bool) -> None:
        super().__init__()
        self.classes, self.lm = classes, lm
        self.p = nn.Parameter(torch.zeros(classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (*x.shape, self.classes) if self.lm else (x.shape[0], self.classes)
        return self.p.expand(shape)


def test_default_corpus_is_fixed_vocab_and_deterministic():
    a, b = CharLMTask(context=32), CharLMTask(context=32)
    assert a.vocab == STDLIB_VOCAB and a.vocab_size == 97
    assert a.model_kwargs() == {"vocab_size": 97, "context": 32}
    n_val = math.floor(1_000_000 * 0.1)
    assert a.num_examples("val") == (n_val - 1) // 32
    x1, y1 = a.batch("train", 4, torch.Generator().manual_seed(3))
    x2, y2 = b.batch("train", 4, torch.Generator().manual_seed(3))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape == (4, 32) and x1.dtype == torch.long
    assert torch.equal(x1[:, 1:], y1[:, :-1])  # targets are the inputs shifted by one
    assert "import " in a.decode(a.eval_batches("train", 1)[0][0].flatten())


def test_eval_windows_cover_val_in_order_and_uniform_model_scores_log_vocab():
    task = CharLMTask(context=16)
    batches = task.eval_batches("val", max_batches=2, batch_size=8)
    assert len(batches) == 2
    x0, y0 = batches[0]
    assert torch.equal(x0[0, 1:], y0[0, :-1]) and torch.equal(x0[1, 0], y0[0, -1])  # contiguous windows
    metrics = task.evaluate(ConstantLogits(97, lm=True), max_batches=3)
    assert metrics["loss"] == pytest.approx(math.log(97), rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(97, rel=1e-4)
    assert task.metric == "val_loss" and task.metric_direction == "min"


@pytest.mark.skipif(not SHAKESPEARE.is_file(), reason="shared benchmark corpus not present")
def test_tinyshakespeare_vocabulary():
    task = CharLMTask(SHAKESPEARE, context=128)
    assert task.vocab_size == 65
    assert task.num_examples("val") == (1115394 - (1115394 - 111539) - 1) // 128


def test_text_too_short_and_missing_file(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("hello world, " * 5)
    with pytest.raises(TaskError, match=r"short\.txt: text too short for context=128"):
        CharLMTask(short)
    with pytest.raises(TaskError, match=r"nope\.txt: no such text file"):
        CharLMTask(tmp_path / "nope.txt")
    with pytest.raises(TaskError, match="context"):
        CharLMTask(short, context=0)


def test_digits_split_is_stratified_deterministic_and_disjoint():
    a, b = DigitsTask(), DigitsTask()
    assert a.num_examples("train") == 1618 and a.num_examples("val") == 179
    assert torch.equal(a._x["val"], b._x["val"])
    counts = torch.bincount(a._y["val"], minlength=10)
    assert counts.min() >= 17 and counts.max() <= 19
    train_rows = {tuple(r.tolist()) for r in a._x["train"].flatten(1)}
    overlap = sum(tuple(r.tolist()) in train_rows for r in a._x["val"].flatten(1))
    assert overlap <= 2  # digits has a couple of exact duplicate images, nothing more
    assert a.model_kwargs()["num_classes"] == 10 and a.model_kwargs()["image_size"] == 8
    x, y = a.batch("train", 5, torch.Generator().manual_seed(0))
    assert x.shape == (5, 1, 8, 8) and y.dtype == torch.long
    assert DigitsTask(flatten=True).batch("val", 2)[0].shape == (2, 64)
    assert abs(float(a._x["train"].mean())) < 1e-4
    m = a.evaluate(ConstantLogits(10, lm=False))
    assert m["loss"] == pytest.approx(math.log(10), rel=1e-5) and 0.05 < m["accuracy"] < 0.15
    assert a.metric == "val_accuracy" and a.metric_direction == "max"
    with pytest.raises(TaskError, match="split"):
        a.batch("test", 2)


def _write_idx(path: Path, magic: int, dims: tuple[int, ...], data: bytes) -> None:
    raw = struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims) + data
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


def test_mnist_reads_idx_and_reports_malformed_files(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    labels = np.repeat(np.arange(10, dtype=np.uint8), 4)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", 0x803, (40, 28, 28), imgs.tobytes())
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", 0x801, (40,), labels.tobytes())
    task = MNISTTask(tmp_path, val_fraction=0.25)
    assert task.num_examples("train") == 30 and task.num_examples("val") == 10
    assert sorted(task._y["val"].tolist()) == list(range(10))
    assert task.model_kwargs() == {"num_classes": 10, "in_channels": 1, "image_size": 28, "in_features": 784}
    np.testing.assert_array_equal(read_idx(tmp_path / "train-images-idx3-ubyte.gz", 0x803), imgs)

    bad = tmp_path / "bad"
    bad.mkdir()
    _write_idx(bad / "t-images-idx3-ubyte", 0x803, (40, 28, 28), imgs.tobytes()[:-5])
    _write_idx(bad / "t-labels-idx1-ubyte", 0x801, (40,), labels.tobytes())
    with pytest.raises(TaskError, match=r"t-images-idx3-ubyte: malformed IDX file \(dimensions"):
        MNISTTask(bad)
    _write_idx(bad / "t-images-idx3-ubyte", 0x801, (40,), labels.tobytes())
    with pytest.raises(TaskError, match="magic number"):
        MNISTTask(bad)
    (bad / "t-images-idx3-ubyte").write_bytes(b"\x00\x00")
    with pytest.raises(TaskError, match="only 2 bytes"):
        MNISTTask(bad)
    with pytest.raises(TaskError, match="no such MNIST directory"):
        MNISTTask(tmp_path / "missing")
    with pytest.raises(TaskError, match="no MNIST image file"):
        MNISTTask(_empty(tmp_path))


def _empty(tmp_path: Path) -> Path:
    d = tmp_path / "empty"
    d.mkdir(exist_ok=True)
    return d


@pytest.mark.skipif(not MNIST.is_dir(), reason="shared MNIST files not present")
def test_real_mnist_split():
    task = MNISTTask(MNIST)
    assert task.num_examples("train") == 9000 and task.num_examples("val") == 1000
    assert torch.bincount(task._y["val"]).min() >= 89
