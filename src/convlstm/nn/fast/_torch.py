"""Every private PyTorch API the fast paths use, in one place, each behind a guard.

Each function looks its API up (a missing name, or a signature this PyTorch rejects,
counts as absent) and says so, so that a PyTorch without it runs the public-API path
instead of failing:

* ``convolution_add_``: oneDNN's convolution with an in-place sum post-op
  (``torch.ops.mkldnn._convolution_pointwise_.binary``);
* ``load_cpp``: Inductor's C++ build and Python binding (``torch._inductor.codecache.
  CppPythonBindingsCodeCache``), which also gives the CPU's vector flags;
* ``cpu_vector_isa``: ``torch.cpu._is_avx512_bf16_supported``, ``torch.cpu._is_avx2_supported``;
* ``compile_kernel``: ``torch.compile`` under a recompile limit of the kernel's own
  (``torch._dynamo.config``: ``recompile_limit``, ``cache_size_limit`` before 2.6) and
  with Inductor's vector width named (``torch._inductor.config.cpp.simdlen``, from
  ``torch._inductor.cpu_vec_isa.pick_vec_isa``). Dynamo is imported at the first
  compilation: importing it creates Inductor's cache directory, which ``import
  convlstm`` must not need.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import torch


@functools.cache
def _mkldnn_binary_pointwise() -> Callable | None:
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        return torch.ops.mkldnn._convolution_pointwise_.binary
    except (AttributeError, RuntimeError):  # not in this build of PyTorch
        return None


# (API, dtype) pairs that are present but rejected our call: oneDNN's bfloat16
# convolution raises on a CPU without AVX-512 while its float32 one works there.
_broken: set[tuple[str, torch.dtype]] = set()


def convolution_add_(
    out: torch.Tensor, inputs: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> bool:
    """``out += conv(inputs, weight) + bias`` in place (stride 1, no padding, 2-D or 3-D,
    ``out`` dense in the channels-last layout) by oneDNN, which adds the convolution into
    ``out`` as it writes its result; ``False`` (nothing written) where unavailable, or
    where it rejected ``out``'s dtype before (that dtype only: it is not asked again)."""
    binary = _mkldnn_binary_pointwise()
    key = ("mkldnn_binary", out.dtype)
    if binary is None or key in _broken:
        return False
    ndim = inputs.dim() - 2
    ones, zeros = [1] * ndim, [0] * ndim
    try:
        binary(out, inputs, weight, bias, zeros, ones, ones, 1, "add", None, None, [], None)
    except (RuntimeError, TypeError):  # another signature, or a dtype this CPU lacks
        _broken.add(key)
        return False
    return True


def load_cpp(argtypes: list[str], source: str) -> Callable:
    """Build ``source`` (its ``extern "C" void kernel(...)`` taking ``argtypes``) with
    Inductor's compiler flags for this CPU, and return it as a Python function of
    tensors and ints. Raises where Inductor or a compiler is missing."""
    from torch._inductor.codecache import CppPythonBindingsCodeCache

    return CppPythonBindingsCodeCache.load_pybinding(argtypes, source)


@functools.cache
def cpu_vector_isa() -> str | None:
    """The widest vector instructions the hand-written loops (``fast.simd``) have a build
    for that this CPU has and ATen's dispatch uses (``ATEN_CPU_CAPABILITY`` lowers it):
    ``"avx512"`` (AVX-512 with BF16), ``"avx2"`` (AVX2 and FMA) or ``None`` (another
    CPU, a lower capability, a platform other than POSIX)."""
    if os.name != "posix":
        return None
    capability = torch.backends.cpu.get_cpu_capability()

    def has(check: str) -> bool:  # absent from this PyTorch: no
        return bool(getattr(torch.cpu, check, lambda: False)())

    if capability == "AVX512" and has("_is_avx512_bf16_supported"):
        return "avx512"
    if capability in ("AVX512", "AVX2") and has("_is_avx2_supported"):
        return "avx2"
    return None


def _vector_width() -> dict[str, int]:
    """Inductor's ``cpp.simdlen`` set to the vector width it picks for this process
    (512 for AVX-512, 256 for AVX2, 0 for none), or ``{}`` where the user set one, or
    this PyTorch lacks the API. Inductor's graph cache keys a generated loop by its
    config but not by the width it picked from the CPU and ``ATEN_CPU_CAPABILITY``
    (PyTorch 2.13): a process picking AVX2 took a loop cached by an AVX-512 process,
    built it for 8 lanes where it was written for 16, and computed wrong values or
    overran its buffers. Named, the width is part of the key."""
    try:
        import torch._inductor.config as inductor_config
        from torch._inductor.cpu_vec_isa import pick_vec_isa

        if inductor_config.cpp.simdlen is not None:
            return {}
        return {"cpp.simdlen": int(pick_vec_isa().bit_width())}
    except (ImportError, AttributeError):
        return {}


def compile_kernel(fn: Callable, recompile_limit: int) -> Callable:
    """``torch.compile(fn, dynamic=True)``, each call run under ``recompile_limit`` (the
    global default counts the dtypes and gate kinds of every layer in the process) and
    with the vector width named (``_vector_width``)."""
    import torch._dynamo.config as dynamo_config
    import torch._inductor.config as inductor_config

    name = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
    compiled = torch.compile(fn, dynamic=True)
    width = _vector_width()

    def run(*args, **kwargs):
        with dynamo_config.patch(**{name: recompile_limit}), inductor_config.patch(width):
            return compiled(*args, **kwargs)

    return run
