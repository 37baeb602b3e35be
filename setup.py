"""Build the hand-written gate loops (``convlstm/nn/fast/gates_simd.cpp``) at install
time, for AVX-512 BF16 and for AVX2, so that their first use in a process needs no
compiler and no wait (``docs/performance.md``). Everything else is in
``pyproject.toml``.

Each build is a plain shared library with C entry points (loaded with ``ctypes``): it
needs a C++ compiler with OpenMP, not torch. Both are optional: where one fails (no
compiler, a compiler without AVX-512 BF16, another platform) the install goes on and
the loops are built on first use by PyTorch's Inductor instead. The flags are
Inductor's for its CPU loops, with the instruction sets named instead of
``-march=native``, so that the two builds give the same bits, and each library runs on
any CPU with its instruction set whatever the machine it was built on (``fast.simd``
picks the one for the CPU before loading it). ``CONVLSTM_BUILD_LOOPS=0`` skips them.
"""

import hashlib
import os
import platform
from pathlib import Path

from setuptools import Extension, setup

FAST = "src/convlstm/nn/fast"
# As Inductor builds its CPU loops; -w: the compiler's warnings about its own
# intrinsics' headers are no news to the user installing the package.
BASE_FLAGS = ["-std=c++17", "-O3", "-fno-tree-loop-vectorize", "-fopenmp", "-w", "-g0"]
# Inductor's floating-point flags (torch._inductor.cpp_builder): no contraction of a
# multiply and an add into an FMA the source does not write.
FLOAT_FLAGS = [
    "-fno-trapping-math",
    "-funsafe-math-optimizations",
    "-ffinite-math-only",
    "-fno-signed-zeros",
    "-fno-finite-math-only",
    "-fno-unsafe-math-optimizations",
    "-fmath-errno",
    "-ffp-contract=off",
]
AVX2_FLAGS = ["-mavx2", "-mfma"]
ISA_FLAGS = {"avx512": [*AVX2_FLAGS, "-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl",
                        "-mavx512bf16"],
             "avx2": AVX2_FLAGS}  # fmt: skip


def extensions() -> list[Extension]:
    wanted = os.environ.get("CONVLSTM_BUILD_LOOPS", "1") != "0"
    if not (wanted and os.name == "posix" and platform.machine() in ("x86_64", "AMD64")):
        return []
    # A library says which source it was built from: fast.simd builds the loops at run
    # time instead of loading a library older than the source next to it.
    digest = hashlib.sha256(Path(f"{FAST}/gates_simd.cpp").read_bytes()).hexdigest()
    return [
        Extension(
            f"convlstm.nn.fast._gates_simd_{isa}",
            sources=[f"{FAST}/gates_simd_{isa}.cpp"],
            depends=[f"{FAST}/gates_simd.cpp"],
            define_macros=[("CONVLSTM_SOURCE_SHA256", f'"{digest}"')],
            extra_compile_args=[*BASE_FLAGS, *FLOAT_FLAGS, *flags],
            extra_link_args=["-fopenmp"],
            language="c++",
            optional=True,
        )
        for isa, flags in ISA_FLAGS.items()
    ]

setup(ext_modules=extensions())
