"""The backend settings: one object, ``convlstm.nn.backend``, for every switch and
threshold of the fast paths (``convlstm.nn.fast``), read from the environment once.

Environment variables (read when ``convlstm`` is imported):

* ``CONVLSTM_FUSION``: the initial ``fusion`` mode, ``auto`` (default), ``always`` or
  ``never``.
* ``CONVLSTM_SIMD_GATES=0``: start with the hand-written AVX-512 gate loops off
  (``simd``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields

import torch

FUSION_MODES = ("auto", "always", "never")


@dataclass
class Backend:
    """How the layers run: which fast paths they may take, and from which sizes.

    Attributes:
        fusion: ``"auto"`` takes a cell's fast path (the whole-sequence
            ``FusedSequence``, the fused gate step, the step convolution with its own
            backward) from ``min_fast_elements`` state elements per step, ``"always"``
            at every size, ``"never"`` runs plain eager ops (needed for higher-order
            gradients: the fast paths have first derivatives only).
        simd: use the hand-written AVX-512 gate loops where the CPU has AVX-512 BF16.
        channels_last: lay 2-D and 3-D steps out channels-last on a CPU.
        stack_inputs: convolve ``[x_t, pad(h)]`` in one call where the cell and the plan
            allow it (``StepPlan.stacked``); off, steps add the input projections, as
            with strides.
        min_fast_elements: state elements per step from which ``"auto"`` takes a fast
            path; below it, compilation time outweighs the saving.
        batched_projection_bytes: without a stacked plan, the input projections of all
            steps are computed in one call up to this size, else step by step.
        mapped_min_bytes: tensors that a training sequence keeps for its backward come
            from the mapped pool (``fast.pool``) from this size, else from the heap.
        fresh_gate_bytes: inference on a CPU convolves each step's gates into a fresh
            tensor below this size, and from it on into one slot of the mapped pool that
            every step and call reuses; a training backward likewise writes every
            step's gate gradient into one slot from this size on. glibc's default
            malloc maps a tensor of 32 MiB or more afresh (its header makes the block
            larger than the 32 MiB its heap takes at most) and page-faults it in at
            every step; below that, or once malloc keeps freed memory
            (``convlstm.runtime.configure_malloc``, ``MALLOC_MMAP_MAX_=0``: no limit
            then), a fresh tensor costs nothing and saves zeroing the slot.
        small_unfold: weight gradients of inputs with at most this many channels x
            kernel taps take the hand-written loop (``fast.simd.weight_grad``) or else
            a matrix product with the unfolded input, not oneDNN's weight gradient.
        avx2_weight_grad: where the hand-written loops are AVX2's (no AVX-512 BF16), the
            weight gradients of larger inputs take the loop as well: oneDNN's AVX2
            weight gradient took twice as long as the loop (``docs/performance.md``).
        split_input_columns: in float16/bfloat16, a stacked input whose input part
            unfolds to at most this many columns has its weight gradient in two parts.
        recompile_limit: graphs each compiled kernel may compile (one per dtype and gate
            kind; shapes are dynamic).
    """

    fusion: str = "auto"
    simd: bool = True
    channels_last: bool = True
    stack_inputs: bool = True
    min_fast_elements: int = 1 << 16
    batched_projection_bytes: int = 64 << 20
    mapped_min_bytes: int = 1 << 20
    fresh_gate_bytes: int = 32 << 20
    small_unfold: int = 64
    avx2_weight_grad: bool = True
    split_input_columns: int = 16
    recompile_limit: int = 32

    def __setattr__(self, name: str, value) -> None:
        if name == "fusion" and value not in FUSION_MODES:
            raise ValueError(f"fusion mode must be one of {FUSION_MODES}, got {value!r}")
        if name not in {f.name for f in fields(self)}:
            raise AttributeError(f"Backend has no setting {name!r}")
        super().__setattr__(name, value)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Backend:
        """The defaults, with ``CONVLSTM_FUSION``, ``CONVLSTM_SIMD_GATES`` and glibc's
        ``MALLOC_MMAP_MAX_`` applied."""
        fusion = environ.get("CONVLSTM_FUSION", "auto").lower()
        if fusion not in FUSION_MODES:
            raise ValueError(f"CONVLSTM_FUSION must be one of {FUSION_MODES}, got {fusion!r}")
        settings = cls(fusion=fusion, simd=environ.get("CONVLSTM_SIMD_GATES", "1") != "0")
        if environ.get("MALLOC_MMAP_MAX_") == "0":  # glibc keeps every freed block
            settings.fresh_gate_bytes = sys.maxsize
        return settings

    @contextlib.contextmanager
    def override(self, **settings) -> Iterator[Backend]:
        """Change settings inside a ``with`` block, restoring them after it."""
        previous = {name: getattr(self, name) for name in settings}
        try:
            for name, value in settings.items():
                setattr(self, name, value)
            yield self
        finally:
            for name, value in previous.items():
                setattr(self, name, value)

    def eager(self) -> bool:
        """Whether plain eager ops must run: fusion is off, or the model is being traced
        (export, ``torch.compile``, TorchScript), which sees through plain ops only."""
        return self.fusion == "never" or in_tracing_context()

    def allows_fast(self, numel: int, device: torch.device, normalized: bool = False) -> bool:
        """Whether a fast path runs for steps whose state has ``numel`` elements on
        ``device``; ``normalized``: the cell has layer norm."""
        if self.eager():
            return False
        if self.fusion == "always":
            return True
        # With layer norm, the compiled group-norm backward is slower per training
        # step than eager ops, so "auto" fuses only the plain gate arithmetic.
        if normalized or device.type not in ("cpu", "cuda"):
            return False
        return numel >= self.min_fast_elements


def in_tracing_context() -> bool:
    """Whether the model runs under ``torch.compile``, export, TorchScript or ONNX export."""
    compiler = getattr(torch, "compiler", None)
    if compiler is not None:
        if compiler.is_compiling():
            return True
        is_exporting = getattr(compiler, "is_exporting", None)
        if is_exporting is not None and is_exporting():
            return True
    return torch.jit.is_scripting() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


#: The process's settings.
backend = Backend.from_environment()


def set_fusion(mode: str) -> None:
    """Choose when the fast paths run: ``backend.fusion = mode`` (see ``Backend``).

    Args:
        mode: ``"auto"`` (default: from ``backend.min_fast_elements`` state elements per
            step), ``"always"`` or ``"never"`` (plain eager ops, also for the step
            convolution: needed for higher-order gradients, since the fast paths have
            first-order derivatives only). ``CONVLSTM_FUSION`` sets the initial mode.
    """
    backend.fusion = mode


def get_fusion() -> str:
    """The current fusion mode (see ``set_fusion``)."""
    return backend.fusion
