import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def perturb(module: torch.nn.Module, scale: float = 0.3) -> torch.nn.Module:
    """Give every parameter (peepholes, norms and biases too) random non-trivial values."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * scale)
    return module


#: The recurrent activations the hand-written gate kernels know (with ``tanh``).
GATES = ["sigmoid", "hard_sigmoid", "hard_sigmoid_keras2"]


def gate_kind(name: str, activation: str = "tanh"):
    """The fused kernels' gate kind for the recurrent activation ``name`` (and the cell's
    ``activation``)."""
    from convlstm.nn.activations import ACTIVATIONS
    from convlstm.nn.fast.gates import gate_kind as kind_of

    kind = kind_of(ACTIVATIONS[activation], ACTIVATIONS[name])
    assert kind is not None, f"{name}, {activation}: not a kind of the hand-written kernels"
    return kind


def kink_values(dtype: torch.dtype) -> torch.Tensor:
    """Pre-activations at the hard sigmoids' kinks (Keras 2's at +-2.5, Keras 3's at +-3),
    each with its three nearest neighbours of ``dtype`` on either side, and zero."""
    values = [torch.tensor(0.0, dtype=dtype)]
    for kink in (-3.0, -2.5, 2.5, 3.0):
        low = high = torch.tensor(kink, dtype=dtype)
        values.append(low)
        for _ in range(3):
            low = torch.nextafter(low, torch.tensor(-10.0, dtype=dtype))
            high = torch.nextafter(high, torch.tensor(10.0, dtype=dtype))
            values += [low, high]
    return torch.stack(values)


def simd_isas() -> list[str]:
    """The instruction sets whose hand-written loops this CPU runs (``fast.simd``): the
    one it picks and the narrower ones, widest first."""
    from convlstm.nn import backend
    from convlstm.nn.fast import simd
    from convlstm.nn.fast._torch import cpu_vector_isa

    names, native = list(simd.ISAS), cpu_vector_isa()
    return names[names.index(native) :] if backend.simd and native in names else []


def _loops_run() -> bool:
    from convlstm.nn import backend
    from convlstm.nn.fast._torch import cpu_vector_isa

    return bool(backend.simd and cpu_vector_isa())


#: Skips a test where no hand-written loops run (another CPU, or switched off).
needs_loops = pytest.mark.skipif(
    not _loops_run(), reason="needs a CPU with AVX-512 BF16 or AVX2 and the loops switched on"
)


@pytest.fixture(params=simd_isas() or [None])
def isa(request, monkeypatch):
    """Each instruction set's hand-written loops in turn, as the ones that run."""
    from convlstm.nn.fast import simd

    if request.param is None:
        pytest.skip("no hand-written loops for this CPU, or switched off")
    monkeypatch.setattr(simd, "_isa", lambda: request.param)
    if simd._kernel("forward") is None:
        pytest.skip(f"the {request.param} loops are neither installed nor buildable")
    return request.param
