"""Tasks (data + metric) supernets train on: character-level LM, digits, MNIST.

``TASKS`` maps a task's ``kind`` to its class, so configs can name tasks.
"""

from __future__ import annotations

from .base import Batch, Task, TaskError, input_adapter, stratified_split
from .text import STDLIB_VOCAB, CharLMTask, stdlib_corpus
from .vision import DigitsTask, ImageTask, MNISTTask, read_idx

TASKS: dict[str, type[Task]] = {cls.kind: cls for cls in (CharLMTask, DigitsTask, MNISTTask)}

__all__ = [
    "STDLIB_VOCAB",
    "TASKS",
    "Batch",
    "CharLMTask",
    "DigitsTask",
    "ImageTask",
    "MNISTTask",
    "Task",
    "TaskError",
    "input_adapter",
    "read_idx",
    "stdlib_corpus",
    "stratified_split",
]
