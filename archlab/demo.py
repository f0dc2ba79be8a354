"""The end-to-end demo behind ``archlab demo``.

Each stage reads the previous stage's files, exactly as a user's run would.
"""

from __future__ import annotations

from collections.abc import Callable

from archlab.spaces.library import mobilenet_v3_space


def run_demo(out: str = "runs", quick: bool = False, log: Callable[[str], None] = print) -> None:
    """Run the demo; ``log`` receives one line per step."""
    space = mobilenet_v3_space()
    log(f"[1/1] search space {space.name}: {space.size:,} architectures, {space.encoding_size} features")
    log(f"      smallest: {space.summary(space.smallest())}")
    log(f"      largest:  {space.summary(space.largest())}")
