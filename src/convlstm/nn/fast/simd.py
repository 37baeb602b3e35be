"""The gate step's loops, hand-written for x86 CPUs with AVX-512 BF16 or AVX2
(float32 and bfloat16).

``FusedSequence`` and ``FusedGates`` run a step's gate arithmetic as one
``torch.compile``-generated loop (``fast.gates``). For bfloat16 gates that loop is
bound by arithmetic, not memory: it rounds every float32 result to bfloat16 in nine
vector instructions (PyTorch's vectorised conversion) where AVX-512 BF16 has one
(``vcvtneps2bf16``), and it divides where a reciprocal estimate and a Newton step do.
And a generated loop writes its results to tensors of its own, which the sequence then
copies into its output and its kept cells. ``gates_simd.cpp`` is the loop written with
those instructions, a degree-6 exponential (relative error about 1e-7), and its ``h``
and cell written straight to where the caller keeps them; it is written once over a
vector layer of 16 AVX-512 lanes or 8 AVX2 lanes. Both builds are made when the package
is installed (``setup.py``: plain shared libraries, ``_gates_simd_avx512`` and
``_gates_simd_avx2``, loaded with ``ctypes``), so that their first use costs nothing and
no training step waits for a compiler; the one used is the widest this CPU has and
ATen dispatches to (``_torch.cpu_vector_isa``: ``ATEN_CPU_CAPABILITY=avx2`` selects the
AVX2 loops on an AVX-512 CPU). Where a build is missing (no compiler at install time,
another platform) or does not load, PyTorch's Inductor compiles it on first use
instead, as it compiles its own loops (seconds to tens of seconds with an empty compile
cache). The install-time and run-time builds use the same compiler flags (Inductor's,
with the ISA named instead of ``-march=native``) and give the same bits (tests). Results
equal the generated loops' within float32 rounding (tests); ``docs/performance.md`` has
the timings.

``weight_grad`` is the weight gradient of a step's convolution (``fast.sequence``): an
FMA per pixel, tap and vector of outputs into accumulators in registers, instead of a
matrix product with the unfolded input (for a few input channels) or oneDNN's weight
gradient (for any number with AVX2, ``backend.avx2_weight_grad``).

``channels_last_copy`` transposes a step of a channels-first output gradient into the
rows the backward loop reads (``fast.gates._Rows.step_rows``), so that a training step
needs no generated loop at all on these CPUs.

``forward`` and ``backward`` return ``False``/``None`` (and write nothing) where the
loops do not apply: ``backend.simd`` off, gates of another dtype, a CPU with neither
instruction set, a row length that is not a multiple of the vector's lanes (16 or 8), a
tensor whose rows are not laid out as described, or a failed build (warned once per
loop); the caller then runs the generated loop.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.machinery
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch

from ...runtime import announce_if_slow
from ..settings import backend
from ._torch import cpu_vector_isa, load_cpp

_SOURCE = Path(__file__).with_name("gates_simd.cpp")


class Build(NamedTuple):
    """The loops for one instruction set."""

    library: str  # what setup.py builds (every entry point, as convlstm_<name>)
    macro: str | None  # what selects these vectors in a run-time build
    lanes: int  # float32 lanes of a vector


#: The instruction sets the loops are written for, widest first.
ISAS = {"avx512": Build("_gates_simd_avx512", None, 16),
        "avx2": Build("_gates_simd_avx2", "CONVLSTM_AVX2", 8)}  # fmt: skip
#: The C++ file's entry points; the macro selecting each one in a run-time build.
_ENTRY_POINTS = {"forward": None, "backward": "CONVLSTM_BACKWARD",
                 "transpose": "CONVLSTM_TRANSPOSE",
                 "weight_grad": "CONVLSTM_WEIGHT_GRAD"}  # fmt: skip
#: The dtypes of the gates (and of h and the gradients) the loops run for.
GATE_DTYPES = (torch.bfloat16, torch.float32)
_kernels: dict[tuple[str, str], Callable | None] = {}  # built once per process


def _isa() -> str | None:
    """The instruction set whose loops run: ``_torch.cpu_vector_isa``."""
    return cpu_vector_isa()


def lanes() -> int:
    """The float32 lanes of a vector of the loops that run (16 or 8); 0 where none do."""
    isa = _isa()
    return ISAS[isa].lanes if isa in ISAS else 0


def _argtypes(source: str) -> dict[str, list[str]]:
    """The parameter types of each ``extern "C" void ENTRY(name)(...)`` in ``source``,
    by name, read from the C++ itself (``const float* c_prev`` -> ``const float*``)."""
    signatures = re.findall(r'extern "C" void ENTRY\((\w+)\)\(([^)]*)\)', source)
    return {
        name: [re.sub(r"\s*\b\w+$", "", p.strip()) for p in parameters.split(",")]
        for name, parameters in signatures
    }


@functools.cache
def _library(isa: str) -> ctypes.CDLL | None:
    """The loops for ``isa`` built at install time, ``None`` where they were not built.
    Raises ``OSError`` where the file is there but does not load, or was built from
    another ``gates_simd.cpp`` than the one beside it (an edited source not yet rebuilt
    by ``pip install -e .``)."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = _SOURCE.with_name(ISAS[isa].library + suffix)
        if path.is_file():
            # torch is loaded, so the library's OpenMP runtime (libgomp.so.1) resolves
            # to torch's own, as for the loops Inductor builds.
            library = ctypes.CDLL(str(path))
            built_from = getattr(library, "convlstm_source_sha256", None)
            if built_from is not None:
                built_from.restype = ctypes.c_char_p
                built_from = built_from().decode()
            if built_from != hashlib.sha256(_SOURCE.read_bytes()).hexdigest():
                raise OSError(f"{path.name} was built from another {_SOURCE.name}")
            return library
    return None


def _bind(function: Callable, argtypes: list[str]) -> Callable:
    """``function`` (C parameters ``argtypes``: pointers and ``int64_t``) as a Python
    function of tensors and ints, called as Inductor's bindings are."""
    if not all(t == "int64_t" or t.endswith("*") for t in argtypes):
        raise TypeError(f"unexpected parameter types {argtypes}")
    function.argtypes = [ctypes.c_int64 if t == "int64_t" else ctypes.c_void_p for t in argtypes]
    function.restype = None

    def run(*args) -> None:
        function(*(a.data_ptr() if isinstance(a, torch.Tensor) else a for a in args))

    return run


def _prebuilt(name: str, argtypes: list[str], isa: str) -> Callable | None:
    """Entry point ``name`` of the library for ``isa`` built at install time, or
    ``None`` where it is missing; one that is there but does not load is warned about."""
    try:
        library = _library(isa)
        return None if library is None else _bind(getattr(library, f"convlstm_{name}"), argtypes)
    except (OSError, AttributeError, TypeError) as error:
        warnings.warn(
            f"convlstm: the installed CPU loop {name!r} does not load "
            f"({type(error).__name__}: {error}); building it now.",
            RuntimeWarning,
            stacklevel=4,
        )
        return None


def _run_time_source(name: str, isa: str) -> str:
    """``gates_simd.cpp`` with the macros that select entry point ``name`` (as
    ``kernel``) and ``isa``'s vectors, for Inductor's build."""
    defines = (d for d in (_ENTRY_POINTS[name], ISAS[isa].macro) if d)
    return "".join(f"#define {d} 1\n" for d in defines) + _SOURCE.read_text()


def _kernel(name: str) -> Callable | None:
    isa = _isa()
    key = (name, str(isa))
    if key not in _kernels:
        _kernels[key] = None
        if isa in ISAS:
            try:
                argtypes = _argtypes(_SOURCE.read_text())[name]
                _kernels[key] = _prebuilt(name, argtypes, isa)
                if _kernels[key] is not None:
                    return _kernels[key]
                with announce_if_slow(f"building the CPU loop {name!r}"):
                    _kernels[key] = load_cpp(argtypes, _run_time_source(name, isa))
            except Exception as error:  # no compiler, or another PyTorch's internals
                warnings.warn(
                    f"convlstm: hand-written CPU loop {name!r} unavailable "
                    f"({type(error).__name__}: {error}); using the generated ones.",
                    RuntimeWarning,
                    stacklevel=3,
                )
    return _kernels[key]


def _row_groups(t: torch.Tensor, rows: int, width: int) -> tuple[int, int] | None:
    """``(rows_per_batch, batch_stride)`` of a ``(B, ...)`` tensor whose every sample
    holds ``rows // B`` rows of ``width`` elements back to back, or ``None``."""
    batch = t.shape[0]
    if batch == 0 or rows % batch or t[0].numel() != (rows // batch) * width:
        return None
    if not t[0].is_contiguous():
        return None
    return rows // batch, (t.stride(0) if batch > 1 else t[0].numel())


def _lanes(width: int) -> bool:
    """Rows of ``width`` elements split into whole vectors."""
    n = lanes()
    return width > 0 and n > 0 and width % n == 0


def _applies(*tensors: torch.Tensor, dtypes: tuple[torch.dtype, ...]) -> bool:
    return backend.simd and _isa() is not None and dtypes[0] in GATE_DTYPES and all(
        t.device.type == "cpu" and t.dtype == d for t, d in zip(tensors, dtypes)
    )


def _peephole_rows(peep: torch.Tensor | None, rows: int, width: int) -> int | None:
    """The weight rows ``P`` of peephole weights ``(3, P, K)`` (float32, contiguous, ``P``
    dividing ``rows``) for rows of ``width``; 0 for ``None``; ``None`` where they do not
    fit."""
    if peep is None:
        return 0
    if not (peep.device.type == "cpu" and peep.dtype == torch.float32 and peep.is_contiguous()
            and peep.dim() == 3 and peep.shape[0] == 3 and peep.shape[2] == width):  # fmt: skip
        return None
    weight_rows = peep.shape[1]
    return weight_rows if weight_rows > 0 and rows % weight_rows == 0 else None


def forward(
    z: torch.Tensor,
    c_prev: torch.Tensor,
    kind: int,
    h: torch.Tensor,
    c: torch.Tensor,
    peep: torch.Tensor | None = None,
) -> bool:
    """One step forward: gates ``z`` ``(R, 4, K)`` (bfloat16 or float32) of ``kind``
    (``fast.gates.GateKind``) and ``c_prev`` ``(R, K)`` float32 give ``c`` ``(R, K)``
    float32 (may be ``c_prev`` itself) and ``h``, a ``(B, ...)`` tensor of ``z``'s dtype
    holding ``R`` rows of ``K`` (a 2-D ``(R, K)`` one, or ``_Rows.strided_rows`` of a
    sequence's step). ``peep``: peephole weights ``(3, P, K)`` float32 in order ``w_i,
    w_f, w_o``, row ``r`` taking their row ``r % P`` (``_Rows.peephole_rows``), or
    ``None``. ``False``: not applicable, nothing written."""
    rows, width = c_prev.shape if c_prev.dim() == 2 else (0, 0)
    gate, f32 = z.dtype, torch.float32
    if not (_applies(z, c_prev, h, c, dtypes=(gate, f32, gate, f32)) and _lanes(width)):
        return False
    groups = _row_groups(h, rows, width)
    if groups is None or not (z.is_contiguous() and c_prev.is_contiguous() and c.is_contiguous()):
        return False
    weight_rows = _peephole_rows(peep, rows, width)
    if z.shape != (rows, 4, width) or c.shape != c_prev.shape or weight_rows is None:
        return False
    kernel = _kernel("forward")
    if kernel is None:
        return False
    # Without peepholes (0 weight rows) the loop reads no weights: any tensor stands in.
    weights = c_prev if peep is None else peep
    kernel(z, c_prev, weights, h, c, rows, width, weight_rows, *groups, int(kind),
           int(gate == torch.bfloat16), torch.get_num_threads())  # fmt: skip
    return True


def backward(
    dh: torch.Tensor,
    dc_out: torch.Tensor,
    z: torch.Tensor,
    c: torch.Tensor,
    c_prev: torch.Tensor,
    kind: int,
    dh_more: torch.Tensor | None,
    dz_out: torch.Tensor | None = None,
    peep: torch.Tensor | None = None,
    d_peep: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """One step backward (``fast.gates._step_backward``): ``z`` ``(R, 4, K)``
    (bfloat16 or float32), ``dh`` ``(R, K)`` and ``dh_more`` (``None``, or a ``(B,
    ...)`` tensor of ``R`` rows of ``K``) of ``z``'s dtype, ``dc_out``, ``c`` and
    ``c_prev`` ``(R, K)`` float32; with peepholes ``peep`` as in ``forward``, and
    ``d_peep`` of its shape, into which their gradient is added. Returns ``(dz,
    dc_prev)`` (``(R, 4, K)`` of ``z``'s dtype, written into ``dz_out`` when given, and
    float32 ``(R, K)``), or ``None`` where not applicable."""
    rows, width = c.shape if c.dim() == 2 else (0, 0)
    gate, f32 = z.dtype, torch.float32
    weight_rows = _peephole_rows(peep, rows, width)
    if not (
        _applies(dh, dc_out, z, c, c_prev, dtypes=(gate, f32, gate, f32, f32))
        and _lanes(width)
        and z.shape == (rows, 4, width)
        and dh.shape == dc_out.shape == c_prev.shape == c.shape
        and all(t.is_contiguous() for t in (dh, dc_out, z, c, c_prev))
        and (dz_out is None or (dz_out.shape == z.shape and dz_out.dtype == gate
                                and dz_out.is_contiguous()))
        and weight_rows is not None
        and (peep is None or (d_peep is not None and d_peep.shape == peep.shape
                              and d_peep.dtype == f32 and d_peep.is_contiguous()))
    ):  # fmt: skip
        return None
    groups: tuple[int, int] | None = (rows, 0)
    if dh_more is not None:
        groups = _row_groups(dh_more, rows, width) if dh_more.dtype == gate else None
    kernel = _kernel("backward")
    if groups is None or kernel is None:
        return None
    dz = torch.empty_like(z) if dz_out is None else dz_out
    dc_prev = torch.empty_like(c)
    more = dh if dh_more is None else dh_more
    if peep is None:  # 0 weight rows: the loop reads and writes no weights
        peep = d_peep = c_prev
    kernel(
        dh, dc_out, z, c, c_prev, peep, more, dz, dc_prev, d_peep, rows, width, weight_rows,
        *groups, int(dh_more is not None), int(kind), int(gate == torch.bfloat16),
        torch.get_num_threads(),
    )  # fmt: skip
    return dz, dc_prev


def step_forward(
    z: torch.Tensor, c_prev: torch.Tensor, kind: int, peep: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``forward`` into new ``(R, K)`` tensors: ``(h, c)``, or ``None`` where not
    applicable."""
    if not (_applies(z, c_prev, dtypes=(z.dtype, torch.float32)) and c_prev.dim() == 2):
        return None
    if not _lanes(c_prev.shape[1]):
        return None
    h = torch.empty(c_prev.shape, dtype=z.dtype)
    c = torch.empty_like(c_prev, memory_format=torch.contiguous_format)
    return (h, c) if forward(z, c_prev, kind, h, c, peep) else None


def channels_last_copy(source: torch.Tensor, out: torch.Tensor) -> bool:
    """``out`` ``(B, *S, F)`` = ``source`` ``(B, F, *S)`` (every sample of ``source``
    dense, ``out`` contiguous, of the same dtype of 2, 4 or 8 bytes); ``False`` where not
    applicable, nothing written."""
    if not (backend.simd and _isa() is not None and source.dim() >= 3):
        return False
    batch, channels, spatial = source.shape[0], source.shape[1], source.shape[2:]
    if not (
        source.device.type == out.device.type == "cpu"
        and source.dtype == out.dtype
        and not source.dtype.is_complex
        and source.element_size() in (2, 4, 8)
        and out.shape == (batch, *spatial, channels)
        and out.is_contiguous()
        and batch > 0
        and source[0].is_contiguous()
    ):
        return False
    kernel = _kernel("transpose")
    if kernel is None:
        return False
    pixels = source[0].numel() // channels if channels else 0
    batch_stride = source.stride(0) if batch > 1 else channels * pixels
    kernel(source, out, batch, channels, pixels, batch_stride, source.element_size(),
           torch.get_num_threads())  # fmt: skip
    return True


def weight_grad_at_any_size() -> bool:
    """Whether ``weight_grad`` is the one to take at any number of input channels, not
    only a few: with the AVX2 loops (``backend.avx2_weight_grad``), where oneDNN's AVX2
    weight gradient is the slower one (``docs/performance.md``)."""
    return backend.simd and backend.avx2_weight_grad and _isa() == "avx2"


def weight_grad(
    dz: torch.Tensor, inputs: torch.Tensor, kernel_size: Sequence[int], bias: bool
) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """Weight and bias gradients ``(O, C, kh, kw)``, ``(O,)`` (float32) of the 2-D
    stride-1 convolution ``dz = conv(inputs)``: ``dz`` ``(B, O, H, W)`` channels-last,
    ``inputs`` ``(B, C, H + kh - 1, W + kw - 1)`` of ``dz``'s dtype, any strides;
    ``None`` where not applicable (``O`` not a multiple of the lanes)."""
    if dz.dim() != 4 or inputs.dim() != 4 or len(kernel_size) != 2:
        return None
    batch, outputs, height, width = dz.shape
    kh, kw = kernel_size
    channels = inputs.shape[1]
    columns = channels * kh * kw + int(bias)
    if not (
        _applies(dz, inputs, dtypes=(dz.dtype, dz.dtype))
        and _lanes(outputs)
        and inputs.shape == (batch, channels, height + kh - 1, width + kw - 1)
        and dz.movedim(1, -1).is_contiguous()
    ):
        return None
    kernel = _kernel("weight_grad")
    if kernel is None:
        return None
    grad = torch.zeros(outputs, columns)
    inputs = inputs.float()
    kernel(
        dz, inputs, grad, batch, height, width, outputs, channels, kh, kw, *inputs.stride(),
        int(bias), int(dz.dtype == torch.bfloat16), torch.get_num_threads(),
    )  # fmt: skip
    dw = grad[:, : columns - int(bias)].reshape(outputs, channels, kh, kw)
    return dw, (grad[:, -1] if bias else None)
