"""``archlab extract EXPERIMENT.py ARCH.json OUT_DIR``: write one subnet as a standalone module."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from archlab.core.io import read_text


def cmd_extract(args: argparse.Namespace) -> int:
    import importlib.util

    from archlab.experiment import load_experiment
    from archlab.supernets.export import export_onnx, save_subnet
    from archlab.supernets.tasks.base import input_adapter
    from archlab.supernets.training.evaluation import extract_calibrated

    exp = load_experiment(args.experiment)
    arch_path = Path(args.arch)
    arch = exp.space.validate(read_text(arch_path, "architecture JSON"))
    net = exp.load_supernet(sharing=args.sharing, run_dir=Path(args.run_dir) if args.run_dir else None)
    sub = extract_calibrated(net, exp.task, arch)  # BN statistics of this subnet, as evaluate scores it
    adapt = input_adapter(net)
    metrics = exp.task.evaluate(sub) if adapt is None else exp.task.score(sub, exp.task.eval_batches(), adapt)
    meta = {"experiment": exp.name, "space": exp.space.name, "space_fingerprint": exp.space.fingerprint,
            "sharing": net.sharing, "task": exp.task.config(), "metrics": metrics}
    out = save_subnet(sub, args.out_dir, meta, formats=("safetensors", "pt"), preprocessing=exp.task.preprocessing())
    extra = ""
    if importlib.util.find_spec("onnx") is not None and not args.no_onnx:
        example = net.example_input(1).to("cpu")
        export_onnx(sub.to("cpu"), example, out / "model.onnx")
        extra = ", model.onnx"
    shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
    print(f"wrote {out}: model.safetensors, weights.pt, config.json{extra} ({exp.space.summary(arch)}; {shown})")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("extract", help="write one subnet of a trained supernet as a standalone module")
    p.add_argument("experiment", metavar="EXPERIMENT.py[:NAME]", help="experiment file, or a bundled example name")
    p.add_argument("arch", metavar="ARCH.json", help="architecture of the experiment's space")
    p.add_argument("out_dir", metavar="OUT_DIR", help="directory for the subnet's files")
    p.add_argument("--sharing", metavar="NAME", default=None, help="which trained supernet (default: the experiment's)")
    p.add_argument("--run-dir", metavar="DIR", default=None, help="run directory (default: runs/<name>)")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX file")
    p.set_defaults(func=cmd_extract)
