"""Time one (implementation, workload, mode) case in this process; print one JSON line.

``run.py`` starts one process per case, because with glibc malloc a timing depends on
what ran before it in the same process. Run by hand, e.g.::

    python benchmarks/worker.py --impl convlstm --workload W2 --mode train --iters 3

Every implementation runs the same step. Training: forward over the whole sequence,
the mean squared error against a zeros target (Keras's "mse"; ``F.mse_loss`` on torch),
backward, and one SGD step (lr 0.01); inference: forward only
(``torch.inference_mode`` / ``predict_on_batch``).
The "limit" runs only the step's convolutions (see ``build_limit``).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import resource
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workloads import WORKLOADS, Workload

RESULT_PREFIX = "BENCH_RESULT "
LEARNING_RATE = 0.01


class UnavailableError(Exception):
    """The implementation is not installed here, or cannot run the case at all."""


@dataclass
class Built:
    """A ready-to-time case: ``step`` runs one iteration."""

    step: Callable[[], object]
    gflop: float  # convolution GFLOP one step actually runs (analytic count)
    info: dict[str, Any] = field(default_factory=dict)
    finish: Callable[[], dict[str, Any]] | None = None  # extra measurements after timing


def peak_rss_mib() -> float:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                     "uordblks", "fordblks", "keepcost")
    ]  # fmt: skip


class HeapSampler:
    """Peak of the bytes glibc malloc has handed out and not yet freed (``mallinfo2``:
    in-use arena chunks + mmapped chunks), sampled every ``interval`` seconds from a
    thread. Unlike ru_maxrss it excludes freed memory malloc keeps, so it shows the
    live-tensor peak (short spikes between samples are missed)."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        try:
            self._mallinfo = ctypes.CDLL("libc.so.6").mallinfo2
            self._mallinfo.restype = _MallInfo2
        except (OSError, AttributeError):  # not glibc >= 2.33
            self._mallinfo = None

    def in_use(self) -> int:
        info = self._mallinfo()
        return info.uordblks + info.hblkhd

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.in_use())

    def __enter__(self) -> HeapSampler:
        if self._mallinfo is not None:
            self.peak = self.in_use()
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def peak_mib(self) -> float | None:
        return self.peak / 2**20 if self._mallinfo is not None else None


def make_input(wl: Workload, *, channels_last: bool = False) -> np.ndarray:
    """Standard-normal frames ``(B, T, C, H, W)``, or ``(B, T, H, W, C)`` for Keras."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((wl.batch, wl.steps, wl.channels, wl.height, wl.width), np.float32)
    return np.ascontiguousarray(x.transpose(0, 1, 3, 4, 2)) if channels_last else x


# ---------------------------------------------------------------- PyTorch implementations
def torch_step(
    forward: Callable[[Any], Any], params: list, x: Any, mode: str, *, bf16: bool = False
) -> Callable[[], object]:
    """One training step (forward, MSE against zeros, backward, SGD) or one inference pass."""
    import torch

    def autocast() -> Any:
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    if mode == "infer":

        def infer() -> object:
            with torch.inference_mode(), autocast():
                return forward(x)

        return infer

    optimizer = torch.optim.SGD(params, lr=LEARNING_RATE)
    target: list[Any] = []  # zeros of the output's shape, made once (as Keras's y is)

    def train() -> object:
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            out = forward(x)
        if not target:
            target.append(torch.zeros(out.shape))
        # PyTorch's MSE, as Keras's "mse" is Keras's: its backward is one pass, where
        # autograd of out.square().mean() kept four output-sized tensors at once.
        loss = torch.nn.functional.mse_loss(out.float(), target[0])
        loss.backward()
        optimizer.step()
        return loss

    return train


def apply_convlstm_toggles(args: argparse.Namespace) -> dict[str, Any]:
    """Ablation switches, set through the backend settings (``convlstm.nn.backend``)."""
    from convlstm.nn import backend

    backend.fusion = args.fusion
    backend.simd = not args.generated_gates
    # NCHW: the stacked step then convolves NCHW tensors.
    backend.channels_last = not args.no_channels_last
    if args.unfused:
        # The path stride > 1 takes: input projections (one batched call over all B*T
        # frames, or one call per step), then a recurrent-only convolution and an add.
        backend.stack_inputs = False
        backend.batched_projection_bytes = 1 << 62 if args.unfused == "batched" else 0
    return {
        "fusion": backend.fusion,
        "channels_last": backend.channels_last,
        "input_projection": f"{args.unfused} (unfused)" if args.unfused else "stacked",
        "gate_loops": "generated" if args.generated_gates else "hand-written where they apply",
    }


def build_convlstm(
    wl: Workload, mode: str, args: argparse.Namespace, gru: bool = False
) -> Built:
    import torch

    import convlstm

    info = apply_convlstm_toggles(args)
    torch.manual_seed(0)
    layer = (convlstm.ConvGRU2d if gru else convlstm.ConvLSTM2d)(
        wl.channels,
        wl.filters,
        wl.kernel,
        padding=wl.padding,
        bias=wl.bias,
        recurrent_activation=wl.recurrent_activation,
        checkpoint=args.checkpoint,
    )
    layer.train(mode == "train")
    x = torch.from_numpy(make_input(wl))

    def forward(inp: torch.Tensor) -> torch.Tensor:
        return layer(inp)[0]

    info.update(checkpoint=args.checkpoint, bf16_autocast=args.bf16)
    finish = None
    if args.bf16:

        def finish() -> dict[str, Any]:
            with torch.no_grad():
                ref = forward(x)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    low = forward(x).float()
            return {"max_abs_err_vs_fp32": float((ref - low).abs().max())}

    step = torch_step(forward, list(layer.parameters()), x, mode, bf16=args.bf16)
    return Built(step, wl.flops(mode, gates=3 if gru else 4) / 1e9, info, finish)


def build_convgru(wl: Workload, mode: str, args: argparse.Namespace) -> Built:
    """This package's ConvGRU2d (Ballas et al. 2016) on the same workload, its gates of
    the workload's recurrent activation; FLOPs counted for its 3 gate groups."""
    return build_convlstm(wl, mode, args, gru=True)


def build_conv_lstm(wl: Workload, mode: str, args: argparse.Namespace) -> Built:
    """PyPI ``conv-lstm`` 0.1.2: same padding (k // 2), sigmoid gates, per-step
    concat + one conv, eager gate math, NCHW."""
    import torch

    try:
        from conv_lstm import ConvLSTM
    except ImportError as error:
        raise UnavailableError(f"conv-lstm not installed ({error})") from error
    notes = []
    if wl.padding != "same":
        notes.append(f"no {wl.padding} padding: ran 'same' (more FLOPs, counted)")
    if wl.recurrent_activation != "sigmoid":
        notes.append(f"no {wl.recurrent_activation}: ran sigmoid")
    torch.manual_seed(0)
    model = ConvLSTM(wl.channels, wl.filters, wl.kernel, 1, True, wl.bias)
    model.train(mode == "train")
    x = torch.from_numpy(make_input(wl))

    def forward(inp: torch.Tensor) -> torch.Tensor:
        return model(inp)[0][0]

    step = torch_step(forward, list(model.parameters()), x, mode)
    return Built(step, wl.flops(mode, "same") / 1e9, {"note": "; ".join(notes)})


def build_limit(wl: Workload, mode: str, args: argparse.Namespace) -> Built:
    """Only the convolutions: per step an input conv and a recurrent conv (on a random
    hidden state; no gate math, no recurrence dependency), channels-last like our layer.
    Training adds their backward: weight grads and the hidden state's input grad."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    cl = torch.channels_last
    train = mode == "train"
    f4, k = 4 * wl.filters, wl.kernel
    w_ih = torch.randn(f4, wl.channels, k, k, requires_grad=train)
    w_hh = torch.randn(f4, wl.filters, k, k, requires_grad=train)
    bias = torch.zeros(f4, requires_grad=train) if wl.bias else None
    frames = [f.contiguous(memory_format=cl) for f in torch.from_numpy(make_input(wl)).unbind(1)]
    h, w = wl.out_size()
    hidden = [
        torch.randn(wl.batch, wl.filters, h, w).contiguous(memory_format=cl).requires_grad_(train)
        for _ in range(wl.steps)
    ]
    weights = [w_ih, w_hh] + ([bias] if bias is not None else [])

    def convs() -> list[torch.Tensor]:
        out = []
        for x_t, h_t in zip(frames, hidden):
            out.append(F.conv2d(x_t, w_ih, bias, padding=wl.padding))
            out.append(F.conv2d(h_t, w_hh, padding="same"))
        return out

    if not train:

        def infer() -> object:
            with torch.inference_mode():
                return convs()

        return Built(infer, wl.flops(mode) / 1e9)

    with torch.no_grad():  # upstream gradients, each in its output's layout
        grads = [torch.ones_like(out) for out in convs()[:2]] * wl.steps

    def backward() -> object:
        return torch.autograd.grad(convs(), weights + hidden, grad_outputs=grads)

    return Built(backward, wl.flops(mode) / 1e9)


# ---------------------------------------------------------------- Keras 3
def build_keras(backend: str) -> Callable[[Workload, str, argparse.Namespace], Built]:
    def build(wl: Workload, mode: str, args: argparse.Namespace) -> Built:
        """Keras 3 ``ConvLSTM2D`` (channels_last, its default), run the way ``fit`` and
        ``predict`` run it: ``train_on_batch`` / ``predict_on_batch``, which on the
        TensorFlow backend are ``tf.function``s (XLA when ``jit_compile`` resolves to True)."""
        os.environ["KERAS_BACKEND"] = backend
        try:
            if backend == "tensorflow":
                import tensorflow  # noqa: F401
            import keras
        except ImportError as error:
            raise UnavailableError(f"keras/{backend} not installed ({error})") from error
        if keras.backend.backend() != backend:
            raise UnavailableError(f"keras runs on {keras.backend.backend()}, not {backend}")
        keras.utils.set_random_seed(0)
        layer = keras.layers.ConvLSTM2D(
            wl.filters,
            wl.kernel,
            padding=wl.padding,
            recurrent_activation=wl.recurrent_activation,
            use_bias=wl.bias,
            return_sequences=True,
        )
        shape = (wl.steps, wl.height, wl.width, wl.channels)
        model = keras.Sequential([keras.Input(shape, batch_size=wl.batch), layer])
        x = keras.ops.convert_to_tensor(make_input(wl, channels_last=True))
        if mode == "train":
            model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), loss="mse")
            y = keras.ops.zeros(model.output_shape)

            def step() -> object:
                return model.train_on_batch(x, y)

        else:

            def step() -> object:
                return model.predict_on_batch(x)

        info = {"keras": keras.__version__, "jit_compile": bool(model.jit_compile)}
        return Built(step, wl.flops(mode) / 1e9, info)

    return build


IMPLS: dict[str, Callable[[Workload, str, argparse.Namespace], Built]] = {
    "convlstm": build_convlstm,
    "convgru": build_convgru,
    "keras-torch": build_keras("torch"),
    "keras-tf": build_keras("tensorflow"),
    "conv-lstm": build_conv_lstm,
    "limit": build_limit,
}


# ---------------------------------------------------------------- timing
def run_case(args: argparse.Namespace) -> dict[str, Any]:
    wl = WORKLOADS[args.workload]
    if args.steps:
        wl = wl.with_steps(args.steps)
    setup_start = time.perf_counter()
    built = IMPLS[args.impl](wl, args.mode, args)
    setup_s = time.perf_counter() - setup_start  # imports, model and input
    setup_rss = peak_rss_mib()
    start = time.perf_counter()
    for _ in range(args.warmup):
        built.step()
    warmup_s = time.perf_counter() - start
    times: list[float] = []
    cpu_times: list[float] = []  # process CPU time (all threads): less sensitive to load
    with HeapSampler() if args.heap else contextlib.nullcontext() as heap:
        while len(times) < args.iters and (
            len(times) < args.min_iters or sum(times) < args.budget
        ):
            start, cpu_start = time.perf_counter(), time.process_time()
            built.step()
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    result: dict[str, Any] = {
        "status": "ok",
        "median_s": statistics.median(times),
        "min_s": min(times),
        "times_s": times,
        "cpu_median_s": statistics.median(cpu_times),
        "warmup_s": warmup_s,
        "setup_s": setup_s,
        "gflop": built.gflop,
        "peak_rss_mib": peak_rss_mib(),
        "setup_rss_mib": setup_rss,
        "peak_heap_mib": heap.peak_mib if heap is not None else None,
        "steps": wl.steps,
        **built.info,
    }
    if "torch" in sys.modules:
        torch_module = sys.modules["torch"]
        result["torch_threads"] = torch_module.get_num_threads()
        # what ATEN_CPU_CAPABILITY left ATen (and Inductor) to use: "AVX512", "AVX2", ...
        result["cpu_capability"] = torch_module.backends.cpu.get_cpu_capability()
    settings = sys.modules.get("convlstm.nn.settings")
    if settings is not None:
        result["simd_gates"] = settings.backend.simd
    pool = getattr(sys.modules.get("convlstm.nn.fast.pool"), "mapped_pool", None)
    if pool is not None:  # what convlstm's training keeps outside malloc's heap
        result["mapped_mib"] = pool.held() / 2**20
    if built.finish is not None:
        result.update(built.finish())
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impl", choices=sorted(IMPLS), required=True)
    p.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    p.add_argument("--mode", choices=("train", "infer"), required=True)
    p.add_argument("--steps", type=int, help="override the workload's T")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations (compilation)")
    p.add_argument("--iters", type=int, default=10, help="at most this many timed iterations")
    p.add_argument("--min-iters", type=int, default=3, help="at least this many")
    p.add_argument("--budget", type=float, default=20.0, help="stop after ~this many seconds")
    p.add_argument("--threads", type=int, help="OMP/TF thread count (default: all cores)")
    p.add_argument("--heap", action="store_true", help="sample the live malloc heap peak")
    g = p.add_argument_group("convlstm only")
    g.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    g.add_argument("--checkpoint", action="store_true", help="checkpoint=True")
    g.add_argument("--fusion", choices=("auto", "always", "never"), default="auto")
    g.add_argument("--no-channels-last", action="store_true", help="ablation")
    g.add_argument(
        "--unfused", choices=("batched", "per-step"), help="ablation: the stride>1 conv path"
    )
    g.add_argument(
        "--generated-gates", action="store_true",
        help="ablation: torch.compile's gate loops instead of the hand-written ones",
    )  # fmt: skip
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.threads:  # before torch / tensorflow are imported
        for var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
            os.environ[var] = str(args.threads)
    try:
        result = run_case(args)
    except UnavailableError as error:
        result = {"status": "unavailable", "reason": str(error)}
    except Exception as error:
        traceback.print_exc()
        result = {"status": "error", "reason": f"{type(error).__name__}: {error}"}
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
