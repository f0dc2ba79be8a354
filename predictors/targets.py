"""Measurement targets: where and how a model is timed.

A target string is ``KIND[:key=value,...]``, e.g. ``cpu:threads=1,batch=1``,
``cuda:batch=8,dtype=float16`` or ``onnx:threads=4``. Kinds (``TARGET_KINDS``):

- ``cpu``  - PyTorch eager on the CPU, wall clock by ``time.perf_counter_ns``;
- ``cuda`` - PyTorch eager on a GPU, timed with CUDA events (``device=N`` picks the GPU);
- ``onnx`` - ONNX Runtime on the CPU (the module exported once per architecture).

Keys: ``threads`` (intra-op threads, default 1 on CPU), ``batch`` (default 1), ``dtype``
(float32, float16, bfloat16), ``device`` (GPU index). Every measurement row records the
resolved target (runtime, device, threads, batch, dtype) and the input shape.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .errors import ProfilingError

if TYPE_CHECKING:
    import torch
    from torch import nn

DTYPES = ("float32", "float16", "bfloat16")
TARGET_KINDS = {"cpu": ("torch", "cpu"), "cuda": ("torch", "cuda"), "onnx": ("onnxruntime", "cpu")}
KEYS = ("threads", "batch", "dtype", "device")


@dataclass(frozen=True)
class Target:
    """A resolved measurement target (``parse_target`` builds one from a string)."""

    kind: str = "cpu"
    threads: int = 1
    batch: int = 1
    dtype: str = "float32"
    device_index: int = 0

    @property
    def runtime(self) -> str:
        return TARGET_KINDS[self.kind][0]

    @property
    def device(self) -> str:
        dev = TARGET_KINDS[self.kind][1]
        return f"cuda:{self.device_index}" if dev == "cuda" else dev

    @property
    def spec(self) -> str:
        """Canonical target string (round-trips through ``parse_target``)."""
        parts = [f"threads={self.threads}", f"batch={self.batch}"]
        if self.dtype != "float32":
            parts.append(f"dtype={self.dtype}")
        if self.kind == "cuda" and self.device_index:
            parts.append(f"device={self.device_index}")
        return f"{self.kind}:" + ",".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "runtime": self.runtime, "device": self.device, "spec": self.spec}


def _int(key: str, value: str, text: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise ProfilingError(f"target {text!r}: {key}={value!r} is not an integer") from None
    if n < (0 if key == "device" else 1):
        raise ProfilingError(f"target {text!r}: {key} must be >= {0 if key == 'device' else 1}, got {n}")
    return n


def parse_target(text: str | Target) -> Target:
    """``"cpu:threads=1,batch=1"`` -> ``Target``; a clear ``ProfilingError`` for anything else."""
    if isinstance(text, Target):
        return text
    if not isinstance(text, str) or not text.strip():
        raise ProfilingError(f"a target must be a string like 'cpu:threads=1,batch=1', got {text!r}")
    kind, _, rest = text.strip().partition(":")
    if kind not in TARGET_KINDS:
        raise ProfilingError(f"unknown target kind {kind!r} in {text!r}; allowed: {', '.join(TARGET_KINDS)}")
    values: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ProfilingError(f"target {text!r}: {item!r} is not key=value")
        if key not in KEYS:
            raise ProfilingError(f"target {text!r}: unknown key {key!r}; allowed: {', '.join(KEYS)}")
        if key == "dtype":
            if value not in DTYPES:
                raise ProfilingError(f"target {text!r}: dtype {value!r} not supported; allowed: {', '.join(DTYPES)}")
            values["dtype"] = value
        else:
            values["device_index" if key == "device" else key] = _int(key, value, text)
    if kind != "cuda" and values.get("dtype", "float32") == "float16":
        raise ProfilingError(f"target {text!r}: float16 needs the cuda target")
    return Target(kind=kind, **values)


# runtimes ---------------------------------------------------------------------------------
RUNTIMES: dict[str, type[Runtime]] = {}


def register_runtime(kind: str) -> Callable[[type[Runtime]], type[Runtime]]:
    def deco(cls: type[Runtime]) -> type[Runtime]:
        RUNTIMES[kind] = cls
        return cls

    return deco


class Runtime:
    """Runs and times one module on one target. ``prepare`` returns a zero-argument callable
    doing one forward pass; ``time`` runs it ``warmup`` times, then ``repeats`` timed times
    and returns the per-run latencies in ms."""

    kind: ClassVar[str] = ""

    def __init__(self, target: Target) -> None:
        self.target = target

    def check(self) -> None:
        """Raise ``ProfilingError`` when this runtime is not available here."""

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Thread settings for the duration of a profiling run (restored afterwards)."""
        import torch

        old = torch.get_num_threads()
        torch.set_num_threads(self.target.threads)
        try:
            yield
        finally:
            torch.set_num_threads(old)

    def torch_device(self) -> torch.device:
        import torch

        return torch.device(self.target.device)

    def torch_dtype(self) -> torch.dtype:
        import torch

        return getattr(torch, self.target.dtype)

    def place(self, module: nn.Module, x: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
        """Module in eval mode on the target's device and dtype; the input moved alongside."""
        module = module.eval().to(self.torch_device())
        if self.target.dtype != "float32":
            module = module.to(self.torch_dtype())
        x = x.to(self.torch_device())
        if x.is_floating_point():
            x = x.to(self.torch_dtype())
        return module, x

    def prepare(self, module: nn.Module, x: torch.Tensor) -> Callable[[], object]:
        import torch

        module, x = self.place(module, x)

        def run() -> Any:
            with torch.inference_mode():
                return module(x)

        return run

    def time(self, fn: Callable[[], Any], warmup: int, repeats: int) -> np.ndarray:
        for _ in range(warmup):
            fn()
        out = np.empty(repeats)
        clock = time.perf_counter_ns
        for i in range(repeats):
            t0 = clock()
            fn()
            out[i] = (clock() - t0) / 1e6
        return out


@register_runtime("cpu")
class TorchCPU(Runtime):
    kind = "cpu"


@register_runtime("cuda")
class TorchCUDA(Runtime):
    kind = "cuda"

    def check(self) -> None:
        import torch

        if not torch.cuda.is_available():
            raise ProfilingError("target 'cuda' needs a CUDA GPU; none is available (use cpu:...)")
        if self.target.device_index >= torch.cuda.device_count():
            raise ProfilingError(f"target device={self.target.device_index}: only {torch.cuda.device_count()} GPU(s)")

    def time(self, fn: Callable[[], Any], warmup: int, repeats: int) -> np.ndarray:
        import torch

        dev = self.torch_device()
        for _ in range(warmup):
            fn()
        torch.cuda.synchronize(dev)
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
        for s, e in zip(starts, ends):
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize(dev)
        return np.asarray([s.elapsed_time(e) for s, e in zip(starts, ends)])


@register_runtime("onnx")
class OnnxRuntimeCPU(Runtime):
    kind = "onnx"

    def check(self) -> None:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ModuleNotFoundError:
            raise ProfilingError("target 'onnx' needs onnx and onnxruntime: pip install 'archlab[onnx]'") from None

    def prepare(self, module: nn.Module, x: torch.Tensor) -> Callable[[], object]:
        import io
        import warnings

        import onnxruntime as ort
        import torch

        module, x = self.place(module, x)
        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # the TorchScript exporter writes to a file object; torch's annotation says a path
            torch.onnx.export(module, (x,), buf, dynamo=False, opset_version=17,  # type: ignore[arg-type]
                              input_names=["input"], output_names=["output"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.target.threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
        feed = {"input": x.cpu().numpy()}
        return lambda: sess.run(None, feed)


def runtime_for(target: Target | str) -> Runtime:
    """The runtime of a target, checked to be available."""
    t = parse_target(target)
    rt = RUNTIMES[t.kind](t)
    rt.check()
    return rt
