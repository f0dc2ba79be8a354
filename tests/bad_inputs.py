"""The bad-input corpus: every case is a file (or argument) a user could hand archlab, the
command that reads it, and what its one error line must name.

``CASES`` is a list of ``Case(id, argv, files, expect)``: ``files`` maps a path (relative to
the case's folder) to its bytes, text, or a function ``world -> bytes`` deriving it from the
good files in ``world`` (a trained run, a fitted predictor, a latency table). ``argv`` may use
``{w}`` (the world folder) and ``{t}`` (the case folder). ``tests/test_bad_inputs.py`` runs
each through ``archlab.cli.main`` and checks: exit 2, exactly one stderr line starting
``archlab: error:``, containing every string of ``expect``, and no traceback.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Content = bytes | str | Callable[[Path], bytes]


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    files: dict[str, Content] = field(default_factory=dict)
    expect: tuple[str, ...] = ()


CASES: list[Case] = []


def case(id: str, argv: str | list[str], files: dict[str, Content] | None = None, *expect: str) -> None:
    args = tuple(argv.split()) if isinstance(argv, str) else tuple(argv)
    CASES.append(Case(id, args, dict(files or {}), tuple(expect)))


# the good world every case starts from ---------------------------------------------------
SPACE_PY = textwrap.dedent("""
    from archlab.spaces import Choice, FloatRange, IntRange, PerLayer, SearchSpace

    space = SearchSpace("demo", n_layer=IntRange(1, 3), d_model=Choice(64, 128), act=Choice("relu", "gelu"),
                        drop=FloatRange(0.0, 0.5), layers=PerLayer("n_layer", ffn=Choice(128, 256)))
""")

EXPERIMENT_PY = textwrap.dedent("""
    from archlab import Experiment
    from archlab.spaces.library import mlp_space
    from archlab.supernets.tasks import DigitsTask
    from archlab.supernets.training.config import TrainConfig

    def depth(arch):
        return float(arch["n_layer"])

    experiment = Experiment(
        name="corpus",
        space=mlp_space("corpus_mlp", n_layer=(1, 2), width=(16, 32)),
        family="mlp",
        task=DigitsTask(),
        runs_dir=RUNS,
        train=TrainConfig(steps=2, batch_size=16, checkpoint_every=1, log_every=1, num_threads=1, device="cpu"),
        search={"objectives": {"depth": ("min", depth)}},
        supernet_args={},
    )
""")

GOOD_ARCH = {"n_layer": 2, "d_model": 64, "act": "relu", "drop": 0.1, "layers": [{"ffn": 128}, {"ffn": 256}]}


def experiment_text(runs: str, train: str | None = None, **fields: str) -> str:
    """The good experiment with its ``TrainConfig(...)`` arguments or other fields replaced."""
    text = EXPERIMENT_PY.replace("RUNS", repr(runs))
    if train is not None:
        text = text.replace(
            'TrainConfig(steps=2, batch_size=16, checkpoint_every=1, log_every=1, num_threads=1, device="cpu")',
            f"TrainConfig({train})")
    for name, value in fields.items():
        start = text.index(f"{name}=")
        end = text.index("\n", start)
        text = text[:start] + f"{name}={value}," + text[end:]
    return text


def arch(**changes: Any) -> str:
    return json.dumps({**GOOD_ARCH, **changes})


# arch files: archlab space check SPACE ARCH.json ------------------------------------------
CHECK = "space check {w}/space.py:space {t}/arch.json"


def arch_case(id: str, content: Content, *expect: str) -> None:
    case(f"arch-{id}", CHECK, {"arch.json": content}, *expect)


arch_case("not-utf8", b'{"n_layer": 2, "act": "\xff\xfe"}', "arch.json: not a UTF-8 text architecture JSON file")
arch_case("latin1", '{"act": "caf\u00e9"}'.encode("latin-1"), "not a UTF-8 text")
arch_case("utf16", json.dumps(GOOD_ARCH).encode("utf-16"), "not a UTF-8 text")
arch_case("deep-100000", "[" * 100_000 + "]" * 100_000, "architecture is not valid JSON: nested too deeply")
arch_case("deep-object", '{"a":' * 50_000 + "1" + "}" * 50_000, "nested too deeply")
arch_case("int-5000-digits", arch(n_layer=0).replace('"n_layer": 0', '"n_layer": ' + "9" * 5000),
          "architecture is not valid JSON", "integer string conversion")
arch_case("int-4000-digits", arch(n_layer=0).replace('"n_layer": 0', '"n_layer": ' + "9" * 4000),
          "n_layer: <an integer of 4000 digits> is out of range")
arch_case("float-field-huge-int", arch(drop=10**400), "drop: <an integer of 401 digits> is out of range")
arch_case("empty", "", "architecture is not valid JSON")
arch_case("whitespace", "   \n\t ", "architecture is not valid JSON")
arch_case("bom", b"\xef\xbb\xbf" + json.dumps(GOOD_ARCH).encode(), "architecture is not valid JSON")
arch_case("truncated", arch()[:-7], "architecture is not valid JSON")
arch_case("trailing-garbage", arch() + " x", "architecture is not valid JSON")
arch_case("single-quotes", arch().replace('"', "'"), "architecture is not valid JSON")
arch_case("null", "null", "architecture JSON must be an object, got NoneType")
arch_case("list", json.dumps([GOOD_ARCH]), "must be an object, got list")
arch_case("string", '"n_layer"', "must be an object, got str")
arch_case("number", "42", "must be an object, got int")
arch_case("missing-key", json.dumps({k: v for k, v in GOOD_ARCH.items() if k != "d_model"}), "d_model: missing")
arch_case("unknown-key", arch(width=3), "width: unknown key")
arch_case("n-layer-zero", arch(n_layer=0), "n_layer: 0 is out of range; allowed: integers 1..3")
arch_case("n-layer-four", arch(n_layer=4), "n_layer: 4 is out of range")
arch_case("n-layer-negative", arch(n_layer=-1), "n_layer: -1 is out of range")
arch_case("n-layer-float", arch(n_layer=1.5), "n_layer: 1.5 is not an integer")
arch_case("n-layer-string", arch(n_layer="2"), "n_layer: '2' is not an integer")
arch_case("n-layer-bool", arch(n_layer=True), "n_layer: True is not an integer")
arch_case("n-layer-null", arch(n_layer=None), "n_layer: None is not an integer")
arch_case("n-layer-list", arch(n_layer=[2]), "n_layer: (2,) is not an integer")
arch_case("n-layer-nan", arch().replace('"n_layer": 2', '"n_layer": NaN'), "n_layer: nan is not an integer")
arch_case("d-model-off-grid", arch(d_model=65), "d_model: 65 is not allowed; allowed: 64, 128")
arch_case("d-model-string", arch(d_model="64"), "d_model: '64' is not allowed")
arch_case("d-model-huge-list", arch(d_model=list(range(10_000))), "d_model: (0, 1, 2", "... is not allowed")
arch_case("act-unknown", arch(act="tanh"), "act: 'tanh' is not allowed; allowed: 'relu', 'gelu'")
arch_case("act-number", arch(act=1), "act: 1 is not allowed")
arch_case("act-object", arch(act={"name": "relu"}), "act: Arch({\"name\":\"relu\"}) is not allowed")
arch_case("drop-too-high", arch(drop=0.9), "drop: 0.9 is out of range; allowed: numbers 0.0..0.5")
arch_case("drop-negative", arch(drop=-0.1), "drop: -0.1 is out of range")
arch_case("drop-nan", arch().replace('"drop": 0.1', '"drop": NaN'), "drop: nan is not a finite number")
arch_case("drop-infinity", arch().replace('"drop": 0.1', '"drop": Infinity'), "drop: inf is not a finite number")
arch_case("drop-minus-infinity", arch().replace('"drop": 0.1', '"drop": -Infinity'), "drop: -inf is not a finite")
arch_case("drop-1e400", arch().replace('"drop": 0.1', '"drop": 1e400'), "drop: inf is not a finite number")
arch_case("drop-string", arch(drop="0.1"), "drop: '0.1' is not a finite number")
arch_case("layers-not-list", arch(layers={"ffn": 128}), "layers: expected a list of 2 blocks, got Arch")
arch_case("layers-too-short", arch(layers=[{"ffn": 128}]), "layers: expected 2 blocks (n_layer=2), got 1")
arch_case("layers-too-long", arch(layers=[{"ffn": 128}] * 3), "layers: expected 2 blocks (n_layer=2), got 3")
arch_case("layers-item-not-object", arch(layers=[{"ffn": 128}, 256]), "layers[1]: expected an object")
arch_case("layers-ffn-bad", arch(layers=[{"ffn": 128}, {"ffn": 300}]), "layers[1].ffn: 300 is not allowed")
arch_case("layers-unknown-key", arch(layers=[{"ffn": 128, "k": 3}, {"ffn": 128}]), "layers[0].k: unknown key")
arch_case("layers-missing-key", arch(layers=[{}, {"ffn": 128}]), "layers[0].ffn: missing")
arch_case("layers-string", arch(layers="128,256"), "layers: expected a list of 2 blocks, got str")
arch_case("layers-1000000", arch(layers=[{"ffn": 128}] * 100_000), "layers: expected 2 blocks (n_layer=2), got 100000")
case("arch-no-such-file", CHECK, {}, "arch.json: no such file (expected a architecture JSON file)")
case("arch-is-a-folder", "space check {w}/space.py:space {t}", {}, "is a folder, expected a architecture JSON file")
case("arch-pickle", CHECK, {"arch.json": pickle.dumps(GOOD_ARCH)}, "not a UTF-8 text architecture JSON file")
case("extract-arch-not-utf8", "extract {w}/exp.py {t}/arch.json {t}/out --no-onnx", {"arch.json": b"\x80\x81"},
     "arch.json: not a UTF-8 text architecture JSON file")
case("extract-arch-deep", "extract {w}/exp.py {t}/arch.json {t}/out --no-onnx", {"arch.json": "[" * 100_000},
     "nested too deeply")
case("extract-arch-out-of-space", "extract {w}/exp.py {t}/arch.json {t}/out --no-onnx",
     {"arch.json": json.dumps({"n_layer": 5, "layers": []})}, "n_layer: 5 is out of range")


# spaces: archlab space show FILE.py ------------------------------------------------------
SHOW = "space show {t}/space.py"


def space_case(id: str, body: str, *expect: str, name: str = "") -> None:
    text = "from archlab.spaces import Choice, FloatRange, IntRange, PerLayer, SearchSpace\n" + body + "\n"
    case(f"space-{id}", SHOW + name, {"space.py": text}, *expect)


space_case("count-range-1e9", "s = SearchSpace('s', n=IntRange(1, 10**9), layers=PerLayer('n', w=Choice(1, 2)))",
           "layers: count 'n' may be 1,000,000,000, above the limit of 1000 layers")
space_case("count-2000", "s = SearchSpace('s', layers=PerLayer(2000, w=Choice(1, 2)))",
           "layers: PerLayer count 2000 is above the limit of 1000 layers")
space_case("int-range-1e30", "s = SearchSpace('s', x=IntRange(0, 10**30))", "x: IntRange high=<an integer of 31 digits>")
space_case("int-range-low-huge", "s = SearchSpace('s', x=IntRange(-(10**20), 0))", "x: IntRange low=-100000000000000000000")
space_case("choice-huge-int", "s = SearchSpace('s', x=Choice(1, 10**5000))", "x: Choice value <an integer of 5001 digits>")
space_case("nested-blocks", "s = SearchSpace('s', n=IntRange(1, 1000), layers=PerLayer('n', m=IntRange(1, 1000), "
           "inner=PerLayer('m', w=Choice(1, 2))))", "an architecture may hold 1,001,000 blocks")
space_case("low-above-high", "s = SearchSpace('s', x=IntRange(3, 1))", "IntRange low=3 is greater than high=1")
space_case("step-zero", "s = SearchSpace('s', x=IntRange(1, 3, 0))", "IntRange step must be >= 1, got 0")
space_case("step-off-grid", "s = SearchSpace('s', x=IntRange(1, 4, 2))", "high - low = 3 is not a multiple of step=2")
space_case("int-range-float", "s = SearchSpace('s', x=IntRange(1, 2.5))", "IntRange high must be an int, got 2.5")
space_case("choice-empty", "s = SearchSpace('s', x=Choice())", "Choice() needs at least one value")
space_case("choice-duplicate", "s = SearchSpace('s', x=Choice(1, 1))", "Choice has the value 1 twice")
space_case("choice-nan", "s = SearchSpace('s', x=Choice(float('nan')))", "Choice value nan is not finite")
space_case("choice-object", "s = SearchSpace('s', x=Choice(1, {'a': 1}))", "Choice value {'a': 1} has type dict")
space_case("float-low-above-high", "s = SearchSpace('s', x=FloatRange(1.0, 0.0))", "FloatRange low=1.0 is greater")
space_case("float-infinite", "s = SearchSpace('s', x=FloatRange(0.0, float('inf')))", "FloatRange high must be a finite")
space_case("float-log-zero", "s = SearchSpace('s', x=FloatRange(0.0, 1.0, log=True))", "log=True needs low > 0")
space_case("perlayer-unknown-ref", "s = SearchSpace('s', layers=PerLayer('depth', w=Choice(1)))",
           "layers: count 'depth' names no parameter of this block")
space_case("perlayer-categorical-ref", "s = SearchSpace('s', a=Choice('x', 'y'), layers=PerLayer('a', w=Choice(1)))",
           "layers: count 'a' must name an integer parameter")
space_case("perlayer-negative-ref", "s = SearchSpace('s', n=IntRange(-1, 2), layers=PerLayer('n', w=Choice(1)))",
           "layers: count 'n' may be negative")
space_case("perlayer-negative", "s = SearchSpace('s', layers=PerLayer(-1, w=Choice(1)))", "PerLayer count must be >= 0")
space_case("perlayer-float-count", "s = SearchSpace('s', layers=PerLayer(2.0, w=Choice(1)))",
           "PerLayer count must be an int or a parameter name, got 2.0")
space_case("param-not-param", "s = SearchSpace('s', x=3)", "x: 3 is not a parameter")
space_case("param-bad-name", "s = SearchSpace('s', **{'a.b': Choice(1)})", "parameter name 'a.b' must be a Python identifier")
space_case("empty-name", "s = SearchSpace('', x=Choice(1))", "name: a search space needs a non-empty name")
space_case("two-spaces", "a = SearchSpace('a', x=Choice(1))\nb = SearchSpace('b', x=Choice(2))",
           "defines 2 search spaces (a, b); name one as")
space_case("no-space", "x = 1", "defines 0 search spaces (none)")
space_case("name-not-found", "s = SearchSpace('s', x=Choice(1))", "has no 'nope'; search spaces in it: s", name=":nope")
space_case("name-not-a-space", "s = SearchSpace('s', x=Choice(1))\nt = 3", "space.py:t is a int, not a search space",
           name=":t")
space_case("syntax-error", "s = SearchSpace('s', x=Choice(1)", "syntax error")
space_case("raises-while-importing", "raise RuntimeError('boom')", "RuntimeError while importing: boom")
space_case("recursion-while-importing", "def f():\n    return f()\nf()", "RecursionError while importing")
case("space-not-utf8", SHOW, {"space.py": b"s = '\xff'\n"}, "space.py: line 1: syntax error")
case("space-not-py", "space show {t}/space.txt", {"space.txt": "x"}, "space.txt: expected a Python file ending in .py")
case("space-missing", SHOW, {}, "space.py: no such file")


# experiments: archlab train EXPERIMENT.py --------------------------------------------------
TRAIN = "train {t}/exp.py --out {t}/run"


def train_case(id: str, *expect: str, train: str | None = None, **fields: str) -> None:
    case(f"experiment-{id}", TRAIN, {"exp.py": lambda w, tr=train, f=fields: experiment_text(
        str(w / "runs"), tr, **f).encode()}, *expect)


train_case("batch-size-1e12", "TrainConfig.batch_size: must be an integer >= 1 and <= 1,048,576, got 1000000000000",
           train="batch_size=10**12")
train_case("batch-size-zero", "TrainConfig.batch_size: must be an integer >= 1", train="batch_size=0")
train_case("batch-size-float", "TrainConfig.batch_size: must be an integer", train="batch_size=16.0")
train_case("steps-zero", "TrainConfig.steps: must be an integer >= 1", train="steps=0")
train_case("steps-5000-digits", "TrainConfig.steps: must be an integer >= 1 and <= 1,000,000,000,000, "
           "got an integer of 5000 digits", train="steps=int('9' * 4000) ** 2 // 10**3000")
train_case("lr-negative", "TrainConfig.lr: must be a number >= 0.0", train="lr=-1.0")
train_case("lr-zero", "TrainConfig.lr: must be > 0", train="lr=0.0")
train_case("lr-nan", "TrainConfig.lr: must be a finite number, got nan", train="lr=float('nan')")
train_case("lr-inf", "TrainConfig.lr: must be a finite number, got inf", train="lr=float('inf')")
train_case("lr-huge-int", "TrainConfig.lr: must be a finite number of sensible size", train="lr=10**400")
train_case("lr-string", "TrainConfig.lr: must be a number", train="lr='0.1'")
train_case("weight-decay-negative", "TrainConfig.weight_decay", train="weight_decay=-0.1")
train_case("momentum-above-1", "TrainConfig.momentum: must be a number >= 0.0 and <= 1.0", train="momentum=2.0")
train_case("grad-clip-negative", "TrainConfig.grad_clip", train="grad_clip=-1.0")
train_case("grad-clip-nan", "TrainConfig.grad_clip: must be a finite number", train="grad_clip=float('nan')")
train_case("optimizer-unknown", "TrainConfig.optimizer: must be one of adamw, sgd, got 'adam'", train="optimizer='adam'")
train_case("schedule-unknown", "TrainConfig.schedule: must be one of", train="schedule='step'")
train_case("strategy-unknown", "TrainConfig.strategy: must be one of", train="strategy='nope'")
train_case("strategy-option-unknown", "strategy_options.n_rand: unknown option of strategy 'sandwich'",
           train="strategy='sandwich', strategy_options={'n_rand': 1}")
train_case("strategy-options-not-dict", "TrainConfig.strategy_options: must be a dict", train="strategy_options=[1]")
train_case("device-unknown", "TrainConfig.device: must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'tpu'", train="device='tpu'")
train_case("seed-negative", "TrainConfig.seed: must be an integer >= 0", train="seed=-1")
train_case("seed-huge", "TrainConfig.seed: must be an integer >= 0 and <= 9,223,372,036,854,775,807", train="seed=2**64")
train_case("threads-zero", "TrainConfig.num_threads: must be an integer >= 1", train="num_threads=0")
train_case("warmup-negative", "TrainConfig.warmup_steps", train="warmup_steps=-1")
train_case("eval-batches-zero", "TrainConfig.eval_batches", train="eval_batches=0")
train_case("max-nonfinite-negative", "TrainConfig.max_nonfinite_steps", train="max_nonfinite_steps=-1")
train_case("amp-string", "TrainConfig.amp: must be True, False or None", train="amp='yes'")
train_case("config-unknown-field", "unexpected keyword argument 'stepz'", train="stepz=3")
train_case("family-unknown", "family: unknown 'nope'", family="'nope'")
train_case("task-not-task", "task: expected an archlab.supernets.tasks Task, got int", task="3")
train_case("name-with-slash", "name: 'a/b' must be a non-empty file-name-safe string", name="'a/b'")
train_case("space-not-space", "space: expected a SearchSpace, got str", space="'mlp'")
train_case("supernet-args-not-dict", "supernet_args: expected a dict, got list", supernet_args="[1]")
case("experiment-steps-arg-zero", TRAIN + " --steps 0", {"exp.py": lambda w: experiment_text(str(w / "runs")).encode()},
     "TrainConfig.steps: must be an integer >= 1 and <= 1,000,000,000,000, got 0")
case("experiment-steps-arg-text", TRAIN + " --steps many", {}, "argument --steps: invalid int value: 'many'")
case("experiment-sharing-unknown", TRAIN + " --sharing nope",
     {"exp.py": lambda w: experiment_text(str(w / "runs")).encode()}, "sharing")
case("experiment-device-arg-unknown", TRAIN + " --device tpu",
     {"exp.py": lambda w: experiment_text(str(w / "runs")).encode()}, "TrainConfig.device")
case("experiment-missing", TRAIN, {}, "exp.py: no such file")
case("experiment-not-an-example", "train no_such_example --out {t}/run", {},
     "no_such_example: not a Python file or a bundled example")


# checkpoints: archlab train (resume) and extract over a damaged run folder ------------------
RESUME = "train {w}/exp.py --out {t}/run"


def run_file(name: str) -> Path:
    return Path("run") / "supernet" / name


def _ckpt(world: Path) -> dict[str, Any]:
    import torch

    return torch.load(world / "runs" / "corpus" / "supernet" / "ckpt.pt", weights_only=True)


def _save(obj: Any) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _tampered(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], bytes]:
    def make(world: Path) -> bytes:
        body = _ckpt(world)
        change(body)
        return _save(body)
    return make


def _good(name: str) -> Callable[[Path], bytes]:
    return lambda world: (world / "runs" / "corpus" / "supernet" / name).read_bytes()


class _Evil:
    def __reduce__(self):  # a pickle that would run code: weights_only=True refuses it
        return (print, ("pwned",))


def _nan_model(body: dict[str, Any]) -> None:
    key = next(k for k, v in body["model"].items() if v.is_floating_point())
    body["model"][key] = body["model"][key].clone().fill_(float("nan"))


def ckpt_case(id: str, content: Content, *expect: str) -> None:
    case(f"checkpoint-{id}", RESUME, {str(run_file("ckpt.pt")): content}, *expect)


ckpt_case("truncated", lambda w: _good("ckpt.pt")(w)[:4000], "ckpt.pt: unreadable checkpoint (truncated or corrupt")
ckpt_case("random-bytes", bytes(range(256)) * 40, "ckpt.pt: unreadable checkpoint")
ckpt_case("empty", b"", "ckpt.pt: unreadable checkpoint")
ckpt_case("text", "not a checkpoint", "ckpt.pt: unreadable checkpoint")
ckpt_case("pickle-with-code", pickle.dumps({"model": _Evil()}), "ckpt.pt: unreadable checkpoint")
ckpt_case("plain-dict", lambda w: _save({"a": 1}), "ckpt.pt: not an archlab checkpoint")
ckpt_case("list", lambda w: _save([1, 2]), "ckpt.pt: not an archlab checkpoint")
ckpt_case("version-99", _tampered(lambda b: b.update(version=99)), "ckpt.pt: checkpoint version 99, this archlab reads 1")
ckpt_case("no-model", _tampered(lambda b: b.pop("model")), "ckpt.pt: not an archlab checkpoint (no 'model' state)")
ckpt_case("no-optimizer", _tampered(lambda b: b.pop("optimizer")), "not a training checkpoint (no 'optimizer' entry)")
ckpt_case("no-step", _tampered(lambda b: b.pop("step")), "not a training checkpoint (no 'step' entry)")
ckpt_case("negative-step", _tampered(lambda b: b.update(step=-3)), "step -3 is not a count of steps")
ckpt_case("net-config-not-json", _tampered(lambda b: b.update(net_config="{nope")), "'net_config' is not the model's JSON")
ckpt_case("net-config-deep", _tampered(lambda b: b.update(net_config="[" * 100_000)), "'net_config' is not the model's")
ckpt_case("net-config-number", _tampered(lambda b: b.update(net_config="3")), "'net_config' is not an object")
ckpt_case("other-space", _tampered(lambda b: b.update(net_config=b["net_config"].replace("corpus_mlp", "other"))),
          "checkpoint is for another search space")
ckpt_case("other-family", _tampered(lambda b: b.update(net_config=b["net_config"].replace('"mlp"', '"convnet"'))),
          "checkpoint is for model family 'convnet'")
ckpt_case("nan-weights", _tampered(_nan_model), "holds NaN or inf; this checkpoint cannot be used")
ckpt_case("wrong-shape", _tampered(lambda b: b["model"].update(
    {k: v[:1] for k, v in list(b["model"].items())[:1]})), "weights do not fit the model")
ckpt_case("optimizer-garbage", _tampered(lambda b: b.update(optimizer={"state": 3, "param_groups": "x"})),
          "damaged training state")
ckpt_case("rng-garbage", _tampered(lambda b: b.update(rng={"torch": 1})), "damaged training state")
ckpt_case("train-config-not-json", _tampered(lambda b: b.update(train_config="{")), "damaged training state")
ckpt_case("train-config-changed", _tampered(lambda b: b.update(
    train_config=b["train_config"].replace('"seed": 0', '"seed": 7'))), "seed=7 (now 0)", "--force-config")
case("checkpoint-is-a-folder", RESUME, {str(run_file("ckpt.pt") / "x"): "x"}, "ckpt.pt: no such checkpoint")
EXTRACT = "extract {w}/exp.py {w}/arch.json {t}/out --run-dir {t}/run --no-onnx"


def weights_case(id: str, files: dict[str, Content], *expect: str) -> None:
    base: dict[str, Content] = {str(Path("run") / "supernet" / n): _good(n)
                                for n in ("model.safetensors", "config.json")}
    base.update({str(Path("run") / "supernet" / k): v for k, v in files.items()})
    case(f"weights-{id}", EXTRACT, base, *expect)


weights_case("truncated", {"model.safetensors": lambda w: _good("model.safetensors")(w)[:100]},
             "model.safetensors: unreadable weights (truncated or corrupt file)")
weights_case("random", {"model.safetensors": bytes(range(256)) * 8}, "model.safetensors: unreadable weights")
weights_case("config-not-json", {"config.json": "{"}, "config.json: not a supernet config (not UTF-8 JSON")
weights_case("config-not-utf8", {"config.json": b"\xff\xfe"}, "config.json: not a supernet config (not UTF-8 JSON")
weights_case("config-deep", {"config.json": "[" * 100_000}, "config.json: not a supernet config (JSON nested too")
weights_case("config-no-net", {"config.json": "{}"}, "config.json: not an archlab supernet config")
weights_case("nan", {"model.safetensors": lambda w: _nan_safetensors(w)}, "holds NaN or inf; these weights cannot")


def _nan_safetensors(world: Path) -> bytes:
    from safetensors.torch import load, save

    state = load(_good("model.safetensors")(world))
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].clone().fill_(float("inf"))
    return save(state)


# predictor files: archlab predictor show / score -------------------------------------------
def _pred(world: Path) -> tuple[dict[str, Any], bytes]:
    return json.loads((world / "latency.json").read_text()), (world / "latency.safetensors").read_bytes()


def _seal(doc: dict[str, Any], arrays: bytes | None = None) -> dict[str, Any]:
    """Re-compute the checksums a tamperer can recompute (they guard against damage, not malice)."""
    from archlab.predictors.persistence import _body_digest

    if arrays is not None:
        doc["arrays"]["sha256"] = hashlib.sha256(arrays).hexdigest()
    doc["checksum"] = _body_digest(doc)
    return doc


def _with_arrays(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], dict[str, bytes]]:
    def make(world: Path) -> dict[str, bytes]:
        from safetensors.numpy import load, save

        doc, data = _pred(world)
        arrays = load(data)
        change(arrays)
        new = save(arrays)
        return {"p.json": json.dumps(_seal(doc, new)).encode(), "latency.safetensors": new}
    return make


def _with_doc(change: Callable[[dict[str, Any]], None], seal: bool = True) -> Callable[[Path], dict[str, bytes]]:
    def make(world: Path) -> dict[str, bytes]:
        doc, data = _pred(world)
        change(doc)
        return {"p.json": json.dumps(_seal(doc) if seal else doc).encode(), "latency.safetensors": data}
    return make


def _first_float(arrays: dict[str, Any], value: float) -> None:
    key = next(k for k, v in arrays.items() if v.dtype.kind == "f" and v.size)
    arrays[key] = arrays[key].copy()
    arrays[key].flat[0] = value


PREDICTOR_CASES: list[tuple[str, Content | Callable[[Path], dict[str, bytes]], tuple[str, ...]]] = [
    ("pickle-renamed", pickle.dumps({"kind": "latency", "weights": [1.0]}), ("p.json: not an archlab predictor file (not JSON)",)),
    ("pickle-with-code", pickle.dumps(_Evil()), ("not an archlab predictor file (not JSON)",)),
    ("not-utf8", b"\xff\xfe{}", ("not an archlab predictor file (not JSON)",)),
    ("deep", "[" * 100_000 + "]" * 100_000, ("not an archlab predictor file (not JSON)",)),
    ("int-5000-digits", '{"archlab_predictor": ' + "1" * 5000 + "}", ("not an archlab predictor file (not JSON)",)),
    ("empty", "", ("not an archlab predictor file (not JSON)",)),
    ("json-list", "[1, 2]", ("no 'archlab_predictor' marker",)),
    ("no-marker", '{"kind": "latency"}', ("no 'archlab_predictor' marker",)),
    ("format-99", _with_doc(lambda d: d.update(archlab_predictor=99)), ("predictor format 99 is not supported",)),
    ("checksum-mismatch", _with_doc(lambda d: d.update(n_train=5), seal=False), ("checksum mismatch",)),
    ("kind-unknown", _with_doc(lambda d: d.update(kind="nope")), ("holds a 'nope' predictor, not a 'latency' one",)),
    ("arrays-path-escape", _with_doc(lambda d: d["arrays"].update(file="../latency.safetensors")), ("malformed 'arrays' entry",)),
    ("arrays-missing", _with_doc(lambda d: d["arrays"].update(file="gone.safetensors")), ("array file gone.safetensors is missing",)),
    ("arrays-sha-mismatch", lambda w: {"p.json": (w / "latency.json").read_bytes(), "latency.safetensors": b"x" * 64},
     ("SHA-256 mismatch",)),
    ("arrays-not-safetensors", lambda w: _arrays_bytes(w, b"\x00" * 64), ("not a valid safetensors file",)),
    ("nan-weights", _with_arrays(lambda a: _first_float(a, float("nan"))), ("holds NaN or inf; a fitted predictor never does",)),
    ("inf-weights", _with_arrays(lambda a: _first_float(a, float("inf"))), ("holds NaN or inf",)),
    ("model-unknown", _with_doc(lambda d: d["model"].update(model="nope")), ("unknown model 'nope'",)),
    ("model-missing", _with_doc(lambda d: d.pop("model")), ("malformed predictor file (KeyError",)),
    ("features-garbage", _with_doc(lambda d: d.update(features=3)), ("malformed predictor file",)),
    ("space-count-absurd", _with_doc(lambda d: _absurd_space(d)), ("above the limit of 1000 layers",)),
]


def _arrays_bytes(world: Path, data: bytes) -> dict[str, bytes]:
    doc, _ = _pred(world)
    return {"p.json": json.dumps(_seal(doc, data)).encode(), "latency.safetensors": data}


def _absurd_space(doc: dict[str, Any]) -> None:
    space = doc["features"]["space"]
    assert '"count": "n_layer"' in space
    doc["features"]["space"] = space.replace('"count": "n_layer"', '"count": 5000')


def _predictor_files(content: Any) -> dict[str, Content]:
    if callable(content):
        # a function returning several files: spread it into one entry per file, made once
        made: dict[Path, dict[str, bytes]] = {}

        def part(name: str) -> Callable[[Path], bytes]:
            return lambda w: (made[w] if w in made else made.setdefault(w, content(w)))[name]
        return {"p.json": part("p.json"), "latency.safetensors": part("latency.safetensors")}
    return {"p.json": content}


for _id, _content, _expect in PREDICTOR_CASES:
    case(f"predictor-show-{_id}", "predictor show {t}/p.json", _predictor_files(_content), *_expect)
for _id, _content, _expect in PREDICTOR_CASES[:8]:
    case(f"predictor-score-{_id}", "predictor score {t}/p.json {w}/latency.csv", _predictor_files(_content), *_expect)
case("predictor-missing", "predictor show {t}/p.json", {}, "p.json: no such predictor file")
case("predictor-folder", "predictor show {t}", {}, "no such predictor file")
case("predictor-score-data-missing", "predictor score {w}/latency.json {t}/none.csv", {}, "none.csv")


# latency tables: archlab predictor fit TABLE --space ... ------------------------------------
FIT = "predictor fit {t}/table.csv --space {w}/space.py:space --model ridge --out {t}/p.json --holdout 0"


def _rows(world: Path) -> list[str]:
    return (world / "latency.csv").read_text().splitlines()


def table(change: Callable[[list[str]], list[str]]) -> Callable[[Path], bytes]:
    return lambda w: ("\n".join(change(_rows(w))) + "\n").encode()


def set_value(row: int, value: str) -> Callable[[list[str]], list[str]]:
    def change(lines: list[str]) -> list[str]:
        head, *rows = lines
        cells = rows[row].rsplit(",", 1)
        rows[row] = f"{cells[0]},{value}"
        return [head, *rows]
    return change


def table_case(id: str, content: Content, *expect: str, argv: str = FIT) -> None:
    case(f"table-{id}", argv, {"table.csv": content}, *expect)


table_case("latency-1e308", table(set_value(3, "1e308")), "row 3: latency_ms = 1e+308; latencies must be at most 1e9")
table_case("latency-1e10", table(set_value(0, "1e10")), "row 0: latency_ms = 1e+10; latencies must be at most 1e9")
table_case("latency-negative", table(set_value(2, "-1.5")), "row 2: latency_ms = -1.5; latencies must be > 0")
table_case("latency-zero", table(set_value(1, "0")), "row 1: latency_ms = 0; latencies must be > 0")
table_case("latency-nan", table(set_value(4, "nan")), "row 4: latency_ms is NaN, infinite or missing")
table_case("latency-inf", table(set_value(4, "inf")), "row 4: latency_ms is NaN, infinite or missing")
table_case("latency-minus-inf", table(set_value(0, "-inf")), "row 0: latency_ms is NaN, infinite or missing")
table_case("latency-empty-cell", table(set_value(5, "")), "row 5: latency_ms is NaN, infinite or missing")
table_case("latency-text", table(set_value(5, "fast")), "target column 'latency_ms' is not numeric")
table_case("latency-1e400", table(set_value(2, "1e400")), "row 2: latency_ms is NaN, infinite or missing")
table_case("no-latency-column", table(lambda ls: [ln.rsplit(",", 1)[0] for ls_ in [ls] for ln in ls_]), "latency")
table_case("no-rows", table(lambda ls: ls[:1]), "the table has no rows")
table_case("empty-file", b"", "table.csv")
table_case("not-utf8", b"arch,latency_ms\n\xff\xfe,1.0\n", "table.csv")
table_case("binary", bytes(range(256)) * 4, "table.csv")
table_case("arch-not-json", table(lambda ls: [ls[0], '"{nope",1.0', *ls[2:]]), "row 0: architecture not in space 'demo'")
table_case("arch-deep", table(lambda ls: [ls[0], '"' + "[" * 50_000 + '",1.0', *ls[2:]]), "row 0: architecture not in space")
table_case("arch-out-of-space", table(lambda ls: [ls[0], '"{""n_layer"": 9}",1.0', *ls[2:]]),
           "row 0: architecture not in space 'demo'")
table_case("arch-bad-field", table(lambda ls: [*ls[:2], ls[2].replace('""relu""', '""tanh""')]),
           "row 1: architecture not in space 'demo'", "act: 'tanh' is not allowed")
table_case("target-unknown", table(lambda ls: ls), "table.csv: missing target column 'speed'; columns: arch, latency_ms",
           argv=FIT + " --target speed")
table_case("target-sum-unknown", table(lambda ls: ls), "missing target column 'gpu'", argv=FIT + " --target latency_ms+gpu")
case("table-missing", FIT, {}, "table.csv")
table_case("holdout-above-1", table(lambda ls: ls), "holdout", argv=FIT.replace("--holdout 0", "--holdout 2"))
table_case("model-unknown", table(lambda ls: ls), "nope", argv=FIT.replace("ridge", "nope"))
table_case("kind-unknown", table(lambda ls: ls), "--kind must be latency or accuracy, got 'speed'", argv=FIT + " --kind speed")
table_case("parquet-garbage", b"PAR1garbagePAR1", "table.parquet", argv=FIT.replace("table.csv", "table.parquet"))
case("table-parquet-garbage-real", FIT.replace("table.csv", "table.parquet"), {"table.parquet": b"PAR1" + b"\x00" * 64 + b"PAR1"},
     "table.parquet")
table_case("layer-ms-nan", lambda w: _layer_table(w, "[1.0, NaN]"), "row 0: layer_ms holds nan; per-layer times must be finite")
table_case("layer-ms-negative", lambda w: _layer_table(w, "[1.0, -2.0]"), "row 0: layer_ms holds -2")
table_case("layer-ms-1e308", lambda w: _layer_table(w, "[1e308]"), "row 0: layer_ms holds 1e+308")
table_case("layer-ms-text", lambda w: _layer_table(w, '[""fast""]'), "row 0: layer_ms holds a value that is not a number")
table_case("features-nan", lambda w: b"x,latency_ms\n1.0,2.0\nnan,3.0\n2.0,4.0\n", "row 1: feature 'x' is NaN or missing",
           argv="predictor fit {t}/table.csv --features x --model ridge --out {t}/p.json --holdout 0")
table_case("features-missing", lambda w: b"x,latency_ms\n1.0,2.0\n", "missing feature column 'y'",
           argv="predictor fit {t}/table.csv --features y --model ridge --out {t}/p.json --holdout 0")


def _layer_table(world: Path, value: str) -> bytes:
    head, *rows = _rows(world)
    rows = [f'{r},"{value}"' for r in rows]
    return ("\n".join([head + ",layer_ms", *rows]) + "\n").encode()


# storage URLs: archlab search EXPERIMENT --storage URL ---------------------------------------
SEARCH = ["search", "{w}/exp.py", "--trials", "1", "--storage"]
for _id, _url, _expect in [
    ("unknown-dialect", "bogus://x", "cannot open storage bogus://x"),
    ("missing-driver", "postgresql://u@127.0.0.1:1/db", "cannot open storage postgresql://u@127.0.0.1:1/db"),
    ("mysql-no-driver", "mysql://u@127.0.0.1:1/db", "cannot open storage mysql://u@127.0.0.1:1/db"),
    ("not-a-url", "not a url", "storage 'not a url': not a URL"),
    ("a-text-file", "{w}/space.py", "space.py': not a URL"),
    ("sqlite-into-a-file", "sqlite:///{w}/space.py/x.db", "File exists"),
    ("journal-folder", "journal:///{w}", "Is a directory"),
]:
    case(f"storage-{_id}", [*SEARCH, _url], {}, _expect)
