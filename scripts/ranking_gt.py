"""Rebuild a ranking ground-truth table (``archlab.supernets.ranking.ground_truth``).

    python scripts/ranking_gt.py mlp_mnist --data ../shared/data/mnist
    python scripts/ranking_gt.py mlp_digits --archs 20 --steps 50      # a small one, no data needed

Writes ``data/ranking_gt_<setup>.csv`` and ``.json`` (settings, code version, seed-to-seed
tau); standalone runs are cached under ``--work`` (default ``runs/ranking_gt``), so a killed
build resumes (``build_seconds`` in the sidecar counts only the last invocation;
``standalone_seconds_total`` sums the training time of every run).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from archlab.supernets.ranking.ground_truth import SETUPS, build_ground_truth

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("setup", choices=sorted(SETUPS))
    ap.add_argument("--data", default=None, help="data folder the setup needs (MNIST IDX files for mlp_mnist)")
    ap.add_argument("--archs", type=int, default=None, help="architectures (default: the setup's)")
    ap.add_argument("--steps", type=int, default=None, help="standalone steps (default: the setup's)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--out", default=None, help="CSV path (default data/ranking_gt_<setup>.csv)")
    ap.add_argument("--work", default=str(ROOT / "runs" / "ranking_gt"))
    a = ap.parse_args()
    out = a.out or str(ROOT / "data" / f"ranking_gt_{a.setup}.csv")
    side = build_ground_truth(a.setup, out, a.work, data=a.data, n_archs=a.archs, steps=a.steps, seeds=a.seeds)
    print(json.dumps({"out": out, "seed_to_seed_tau": side["seed_to_seed_tau"], "seconds": side["build_seconds"]}, indent=1))


if __name__ == "__main__":
    main()
