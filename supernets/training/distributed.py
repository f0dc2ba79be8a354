"""Multi-process training (``torchrun``): process-group setup and small collectives.

``torchrun --nproc-per-node=N`` sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``; ``setup`` then
joins the group (NCCL on CUDA, gloo on CPU). Every rank samples the same architectures
(same seeded RNG), each its own batches; rank 0 writes files.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from archlab.core.errors import ArchlabError


@dataclass(frozen=True)
class DistInfo:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    started_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_type: str) -> DistInfo:
    """Join the process group when launched by torchrun with more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_available():  # pragma: no cover - torch built without distributed
        raise ArchlabError("WORLD_SIZE > 1 but torch.distributed is not available")
    started = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        started = True
    return DistInfo(dist.get_world_size(), dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), started)


def teardown(info: DistInfo) -> None:
    if info.started_here and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def check_same(info: DistInfo, text: str, device: torch.device) -> None:
    """Raise ``ArchlabError`` unless every rank passes the same ``text`` (e.g. the step's archs)."""
    if not info.enabled:
        return
    h = int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "big")
    t = torch.tensor([h, -h], dtype=torch.long, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    if int(t[0]) != h or int(t[1]) != -h:
        raise ArchlabError("distributed training: ranks sampled different architectures in one step")
