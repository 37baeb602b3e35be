"""The first use of the fast paths in a process: the hand-written loops come built at
install time (``setup.py``), so a first training step at the fast path's size needs
no compiler and gives the reference's values; where that build is missing or broken,
the loops are built at run time, and where that fails too, the generated ones run."""

import json
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

import convlstm
from convlstm.nn import backend
from convlstm.nn.fast import simd
from convlstm.nn.fast._torch import load_cpp

from .conftest import GATES, gate_kind, needs_loops, simd_isas


def _installed() -> bool:
    try:
        return bool(simd_isas()) and all(simd._library(isa) for isa in simd_isas())
    except OSError:
        return False


installed = pytest.mark.skipif(
    not _installed(),
    reason="the loops were not built at install time (no compiler, or another platform)",
)


@pytest.fixture
def fresh_kernels(monkeypatch):
    """The loops loaded or built anew in this test, the process's own restored after."""
    monkeypatch.setattr(simd, "_kernels", {})


# One training step of five layers at the fast path's size (2 x 16 x 48 x 48 state
# elements per step, above backend.min_fast_elements): W1's kind (valid padding, hard
# sigmoid, no bias), W2's (same padding, sigmoid, bias), Shi et al.'s, with peepholes
# per channel and per pixel, and one with relu as its activation, with fusion "auto"
# and with the reference ("never"), in a fresh process with an empty compile cache.
_FIRST_STEP = textwrap.dedent(
    """
    import json, sys, torch, convlstm
    from convlstm.nn import backend

    def step(**options):
        torch.manual_seed(0)
        layer = convlstm.ConvLSTM2d(1, 16, 3, **options)
        with torch.no_grad():  # non-zero peepholes
            for p in layer.parameters():
                p.add_(torch.randn(p.shape) * 0.3)
        x = torch.randn(2, 3, 1, 50, 50, requires_grad=True)
        out = layer(x)[0]
        loss = torch.nn.functional.mse_loss(out, torch.zeros(out.shape))
        grads = torch.autograd.grad(loss, [x, *layer.parameters()])
        return [out, *grads]

    configs = [dict(padding="valid", bias=False, recurrent_activation="hard_sigmoid"),
               dict(padding="same", bias=True, recurrent_activation="sigmoid"),
               dict(peephole="channel"),
               dict(peephole="pixel", spatial_size=(50, 50), padding="valid"),
               dict(activation="relu")]
    assert 2 * 16 * 48 * 48 >= backend.min_fast_elements
    fast = [step(**c) for c in configs]
    compiler = [m for m in ("torch._dynamo", "torch._inductor.codecache") if m in sys.modules]
    backend.fusion = "never"
    errors = [max(float((a - b).abs().max()) for a, b in zip(f, step(**c)))
              for f, c in zip(fast, configs)]
    print(json.dumps({"compiler": compiler, "errors": errors}))
    """
)


@installed
@needs_loops
def test_a_first_training_step_compiles_nothing_and_equals_the_reference(tmp_path):
    cache = tmp_path / "inductor"
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache), "CONVLSTM_FUSION": "auto"}
    done = subprocess.run([sys.executable, "-c", _FIRST_STEP], env=env, capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["compiler"] == []  # neither torch.compile nor Inductor's C++ build ran
    assert not cache.exists() or not any(cache.rglob("*.so"))
    assert max(result["errors"]) < 2e-5
    assert "compiling" not in done.stderr and "building" not in done.stderr


def _kernel_inputs(name: str, dtype: torch.dtype) -> list:
    """Arguments of entry point ``name`` (as ``simd`` calls it) on random data, on one
    thread (the weight gradient adds the threads' sums in the order they finish)."""
    rows, width, threads = 6 * 5 * 7, 32, 1
    bf16 = int(dtype == torch.bfloat16)
    z = (torch.randn(rows, 4, width) * 3).to(dtype)
    c = torch.randn(rows, width)
    peep = torch.randn(3, 35, width)  # peepholes per pixel: rows of 6 samples of 35
    if name == "forward":
        return [z, c, peep, torch.empty(rows, width, dtype=dtype), torch.empty(rows, width),
                rows, width, 35, rows, 0, int(gate_kind("sigmoid")), bf16, threads]  # fmt: skip
    if name == "backward":
        dh, more = torch.randn(rows, width).to(dtype), torch.randn(rows, width).to(dtype)
        return [dh, torch.randn(rows, width), z, c, torch.randn(rows, width), peep, more,
                torch.empty_like(z), torch.empty(rows, width), torch.zeros_like(peep), rows,
                width, 35, rows, 0, 1, int(gate_kind("hard_sigmoid")), bf16, threads]  # fmt: skip
    if name == "transpose":
        source = torch.randn(3, width, 5, 7).to(dtype)
        return [source, torch.empty(3, 5, 7, width, dtype=dtype), 3, width, 35, source.stride(0),
                source.element_size(), threads]  # fmt: skip
    dz = torch.randn(3, width, 5, 7).to(dtype).contiguous(memory_format=torch.channels_last)
    x = torch.randn(3, 1, 7, 9)
    return [dz, x, torch.zeros(width, 10), 3, 5, 7, width, 1, 3, 3, *x.stride(), 1, bf16,
            threads]  # fmt: skip


@installed
@needs_loops
@pytest.mark.parametrize("name", list(simd._ENTRY_POINTS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_installed_loops_give_the_bits_of_the_run_time_build(name, dtype, isa):
    """The same source and flags: every output equal to the bit."""
    argtypes = simd._argtypes(simd._SOURCE.read_text())[name]
    built = load_cpp(argtypes, simd._run_time_source(name, isa))
    installed = simd._prebuilt(name, argtypes, isa)
    args = _kernel_inputs(name, dtype)
    copy = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    built(*args)
    installed(*copy)
    for a, b in zip(args, copy):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b)


@needs_loops
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize(("channels", "size"), [(16, (118, 158)), (64, (8, 8)), (20, (3, 5))])
def test_channels_last_copy_equals_movedim(dtype, channels, size, isa):
    """Whole blocks of 16 x 16 (8 x 8) and edges, a step of a ``(B, T, F, *S)`` sequence."""
    sequence = torch.randn(3, 4, channels, *size).to(dtype)
    step = sequence[:, 2]
    out = torch.empty(3, *size, channels, dtype=dtype)
    assert simd.channels_last_copy(step, out)
    assert torch.equal(out, step.movedim(1, -1))


@needs_loops
def test_channels_last_copy_declines(isa):
    step = torch.randn(2, 16, 4, 4)
    out = torch.empty(2, 4, 4, 16)
    assert not simd.channels_last_copy(step[:, :, :, :3], out[:, :, :3])  # sample not dense
    assert not simd.channels_last_copy(step, out.double())
    assert not simd.channels_last_copy(step, out.transpose(1, 2))
    assert not simd.channels_last_copy(step.bool(), out.bool())


@needs_loops
def test_without_the_installed_library_the_loops_are_built_at_run_time(
    monkeypatch, isa, fresh_kernels
):
    monkeypatch.setattr(simd, "_library", lambda isa: None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert simd._kernel("forward") is not None
    z, c_prev = torch.randn(10, 4, 16), torch.randn(10, 16)
    h_c = simd.step_forward(z, c_prev, gate_kind("sigmoid"))
    assert h_c is not None
    c = torch.sigmoid(z[:, 1]) * c_prev + torch.sigmoid(z[:, 0]) * torch.tanh(z[:, 2])
    torch.testing.assert_close(h_c[1], c, atol=1e-6, rtol=1e-6)


@needs_loops
def test_a_library_that_does_not_load_warns_and_is_built_at_run_time(
    monkeypatch, fresh_kernels
):
    def broken(isa):
        raise OSError("invalid ELF header")

    monkeypatch.setattr(simd, "_library", broken)
    with pytest.warns(RuntimeWarning, match="does not load"):
        assert simd._kernel("backward") is not None


@needs_loops
def test_when_no_build_works_the_generated_loops_give_the_reference(monkeypatch, fresh_kernels):
    def no_compiler(*args):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(simd, "_library", lambda isa: None)
    monkeypatch.setattr(simd, "load_cpp", no_compiler)

    def grads():
        torch.manual_seed(0)
        layer = convlstm.ConvLSTM2d(1, 16, 3, recurrent_activation=GATES[0])
        x = torch.randn(2, 3, 1, 48, 48, requires_grad=True)
        out = layer(x)[0]
        loss = torch.nn.functional.mse_loss(out, torch.zeros(out.shape))
        return [out, *torch.autograd.grad(loss, [x, *layer.parameters()])]

    with pytest.warns(RuntimeWarning, match="unavailable"), backend.override(fusion="auto"):
        fast = grads()
    assert all(value is None for value in simd._kernels.values())
    with backend.override(fusion="never"):
        plain = grads()
    for a, b in zip(fast, plain):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5)


@installed
def test_a_library_built_from_another_source_is_not_loaded(monkeypatch, tmp_path, isa):
    """An edited ``gates_simd.cpp`` not yet rebuilt by ``pip install -e .``: the loops
    are built from the edited source at run time instead."""
    library = next(simd._SOURCE.parent.glob(f"{simd.ISAS[isa].library}.*"))
    (tmp_path / library.name).write_bytes(library.read_bytes())
    source = tmp_path / simd._SOURCE.name
    source.write_text(simd._SOURCE.read_text() + "\n// edited\n")
    monkeypatch.setattr(simd, "_SOURCE", source)
    with pytest.raises(OSError, match="built from another"):
        simd._library.__wrapped__(isa)
    source.write_text(simd._SOURCE.read_text()[: -len("\n// edited\n")])
    assert simd._library.__wrapped__(isa) is not None


# A forward at the fast path's size through the generated loops (the hand-written ones
# off), against the reference: the largest difference.
_GENERATED_FORWARD = textwrap.dedent(
    """
    import torch, convlstm
    from convlstm.nn import backend

    torch.manual_seed(0)
    layer = convlstm.ConvLSTM2d(1, 16, 3, padding="same").eval()
    x = torch.randn(2, 3, 1, 48, 48)
    with torch.no_grad():
        fast = layer(x)[0]
        backend.fusion = "never"
        print(float((fast - layer(x)[0]).abs().max()))
    """
)


def _lower_capability() -> str | None:
    """An ATen CPU capability below this CPU's, for Inductor's vector loops: narrower
    vectors (AVX2 below AVX-512) or none."""
    return {"AVX512": "avx2", "AVX2": "default"}.get(torch.backends.cpu.get_cpu_capability())


@pytest.mark.skipif(_lower_capability() is None, reason="needs an x86 CPU with AVX2 or more")
def test_generated_loops_are_right_from_a_cache_filled_under_other_vectors(tmp_path):
    """Inductor's graph cache is not keyed by the vector width it generated a loop for
    (PyTorch 2.13): a process under ``ATEN_CPU_CAPABILITY=avx2`` took the AVX-512
    loops' cached graph and computed wrong values (the reverse order corrupted the
    heap). The cache folder is shared, as processes on one machine, or machines sharing
    ``TORCHINDUCTOR_CACHE_DIR``, share it."""
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path), "CONVLSTM_SIMD_GATES": "0",
           "CONVLSTM_FUSION": "auto"}  # fmt: skip
    env.pop("ATEN_CPU_CAPABILITY", None)
    errors = []
    for capability in (None, _lower_capability()):
        run_env = env if capability is None else {**env, "ATEN_CPU_CAPABILITY": capability}
        done = subprocess.run([sys.executable, "-c", _GENERATED_FORWARD], env=run_env,
                              capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, f"ATEN_CPU_CAPABILITY={capability}: {done.stderr}"
        errors.append(float(done.stdout.strip().splitlines()[-1]))
    assert max(errors) < 1e-5, errors
