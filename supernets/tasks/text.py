"""Character-level language modelling on a text file (or the built-in stdlib corpus)."""

from __future__ import annotations

import functools
import math
import os
import sysconfig
from pathlib import Path
from typing import Any

import torch

from .base import Batch, Task, TaskError, check_split

# The default corpus uses a fixed vocabulary (tab, newline and printable ASCII), so model
# sizes do not depend on which Python version built it.
STDLIB_VOCAB = "\t\n" + "".join(chr(i) for i in range(32, 127))
STDLIB_CHARS = 1_000_000
STDLIB_UNKNOWN = "?"


@functools.lru_cache(maxsize=2)
def stdlib_corpus(chars: int = STDLIB_CHARS) -> str:
    """About ``chars`` characters of the Python standard library's own ``.py`` sources.

    Top-level modules of the stdlib directory in sorted file-name order, concatenated and cut
    at exactly ``chars`` characters; characters outside ``STDLIB_VOCAB`` become ``?``.
    Deterministic for a given Python version; needs no download.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():  # pragma: no cover - broken installation
        raise TaskError(f"{root}: the Python standard library directory is missing")
    allowed = set(STDLIB_VOCAB)
    parts: list[str] = []
    size = 0
    for name in sorted(os.listdir(root)):
        if not name.endswith(".py"):
            continue
        text = (root / name).read_text(encoding="utf-8", errors="replace")
        text = "".join(c if c in allowed else STDLIB_UNKNOWN for c in text)
        parts.append(text)
        size += len(text)
        if size >= chars:
            break
    return "".join(parts)[:chars]


class CharLMTask(Task):
    """Character-level language modelling: predict every next character of a window.

    ``path`` is any UTF-8 text file (its vocabulary is its sorted distinct characters); with
    ``path=None`` the corpus is ``stdlib_corpus()`` with the fixed 97-symbol vocabulary.
    The last ``val_fraction`` of the text is the validation split. Inputs are ``(B, context)``
    LongTensors of token ids; targets the same shifted by one.
    """

    kind = "char_lm"
    metric = "val_loss"
    metric_direction = "min"
    eval_batch_size = 64

    def __init__(self, path: str | os.PathLike[str] | None = None, context: int = 128, val_fraction: float = 0.1) -> None:
        if not isinstance(context, int) or isinstance(context, bool) or context < 1:
            raise TaskError(f"context: must be a positive integer (characters), got {context!r}")
        if not 0.0 < float(val_fraction) < 1.0:
            raise TaskError(f"val_fraction: must be between 0 and 1 (exclusive), got {val_fraction}")
        self.path = None if path is None else Path(path)
        self.context = context
        self.val_fraction = float(val_fraction)
        if self.path is None:
            text, vocab, where = stdlib_corpus(), STDLIB_VOCAB, "the standard-library corpus"
        else:
            where = str(self.path)
            if not self.path.is_file():
                raise TaskError(f"{self.path}: no such text file")
            try:
                text = self.path.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise TaskError(f"{self.path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
            vocab = "".join(sorted(set(text)))
        self.vocab = vocab
        self.stoi = {c: i for i, c in enumerate(vocab)}
        n_val = math.floor(len(text) * self.val_fraction)
        n_train = len(text) - n_val
        need = context + 1
        if n_train < need or n_val < need:
            raise TaskError(
                f"{where}: text too short for context={context}: {len(text)} characters give "
                f"{n_train} for training and {n_val} for validation; each needs at least {need}"
            )
        data = torch.tensor([self.stoi[c] for c in text], dtype=torch.long)
        self._data = {"train": data[:n_train], "val": data[n_train:]}

    # data -------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def model_kwargs(self) -> dict[str, Any]:
        return {"vocab_size": self.vocab_size, "context": self.context}

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": None if self.path is None else str(self.path),
                "context": self.context, "val_fraction": self.val_fraction, "vocab_size": self.vocab_size}

    def preprocessing(self) -> dict[str, Any]:
        """``char_vocab``: character ``i`` of ``vocab`` is token ``i`` (models take token ids)."""
        return {"kind": "char_vocab", "vocab": self.vocab}

    def encode(self, text: str) -> torch.Tensor:
        """Token ids of ``text`` (characters outside the vocabulary are an error)."""
        missing = sorted({c for c in text if c not in self.stoi})
        if missing:
            raise TaskError(f"text: characters not in the vocabulary: {missing[:5]!r}")
        return torch.tensor([self.stoi[c] for c in text], dtype=torch.long)

    def decode(self, ids: Any) -> str:
        """Text of a sequence of token ids."""
        return "".join(self.vocab[int(i)] for i in ids)

    def _windows(self, data: torch.Tensor, starts: torch.Tensor) -> Batch:
        idx = starts[:, None] + torch.arange(self.context + 1)
        chunk = data[idx]
        return chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()

    def batch(self, split: str, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        data = self._data[check_split(split)]
        high = len(data) - self.context
        starts = torch.randint(0, high, (int(batch_size),), generator=generator)
        return self._windows(data, starts)

    def num_examples(self, split: str) -> int:
        return (len(self._data[check_split(split)]) - 1) // self.context

    def eval_batches(self, split: str = "val", max_batches: int | None = None,
                     batch_size: int | None = None) -> list[Batch]:
        """Non-overlapping windows covering ``split`` in order, ``batch_size`` per batch."""
        data = self._data[check_split(split)]
        bs = int(batch_size or self.eval_batch_size)
        starts = torch.arange(self.num_examples(split)) * self.context
        out = [self._windows(data, s) for s in starts.split(bs)]
        return out if max_batches is None else out[: int(max_batches)]

    def _finish(self, mean_loss: float, accuracy: float) -> dict[str, float]:
        return {"loss": mean_loss, "perplexity": math.exp(min(mean_loss, 700.0)), "accuracy": accuracy}
