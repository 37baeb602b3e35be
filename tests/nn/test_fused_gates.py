"""FusedGates: the hand-written gate derivatives against autograd of the plain equations."""

import pytest
import torch

from convlstm.nn import backend
from convlstm.nn.activations import ACTIVATIONS
from convlstm.nn.fast.gates import FusedGates, fused_gates
from convlstm.nn.functional import lstm_gate_values

from .conftest import GATES, gate_kind, kink_values

LAYOUTS = {
    "channels_last": lambda t: t.contiguous(memory_format=torch.channels_last),
    "contiguous": lambda t: t.contiguous(),
    "channels_last_3d": lambda t: t.contiguous(memory_format=torch.channels_last_3d),
}


def _inputs(layout: str, dtype=torch.float64, features: int = 3):
    spatial = (2, 3, 4) if layout == "channels_last_3d" else (3, 4)
    gates = LAYOUTS[layout](torch.randn(2, 4 * features, *spatial, dtype=dtype))
    c_prev = LAYOUTS[layout](torch.randn(2, features, *spatial, dtype=dtype))
    return gates.requires_grad_(), c_prev.requires_grad_()


def _reference(gates, c_prev, gate="sigmoid"):
    act = ACTIVATIONS[gate]
    values = lstm_gate_values(gates, c_prev, None, None, None, torch.tanh, act)
    return values["h"], values["c"]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("gate", GATES)
def test_values_and_gradients_equal_the_plain_equations(layout, gate):
    gates, c_prev = _inputs(layout)
    h, c = fused_gates(gates, c_prev, gate_kind(gate))
    ref_h, ref_c = _reference(gates, c_prev, gate)
    torch.testing.assert_close(h, ref_h, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(c, ref_c, atol=1e-12, rtol=1e-12)
    assert h.stride() == ref_h.contiguous(memory_format=_format(layout)).stride()
    weights = torch.randn_like(h), torch.randn_like(c)
    ours = torch.autograd.grad((h * weights[0]).sum() + (c * weights[1]).sum(), (gates, c_prev))
    ref = torch.autograd.grad(
        (ref_h * weights[0]).sum() + (ref_c * weights[1]).sum(), (gates, c_prev)
    )
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-7)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize(
    ("activation", "peephole"),
    [("tanh", "channel"), ("tanh", "pixel"), ("relu", None), ("relu", "pixel")],
)
def test_peepholes_and_relu_equal_the_plain_equations(layout, gate, activation, peephole):
    """Shi et al.'s peepholes, one weight per channel or per pixel, and relu as the
    cell's activation, in every layout (the generated loops in float64): values and the
    gradients of gates, cell and weights."""
    gates, c_prev = _inputs(layout)
    weights = None
    if peephole:
        spatial = c_prev.shape[2:] if peephole == "pixel" else (1,) * (c_prev.dim() - 2)
        weights = torch.randn(3, c_prev.shape[1], *spatial, dtype=torch.float64,
                              requires_grad=True)  # fmt: skip
    h, c = fused_gates(gates, c_prev, gate_kind(gate, activation), weights)
    values = lstm_gate_values(
        gates, c_prev, weights, None, None, ACTIVATIONS[activation], ACTIVATIONS[gate]
    )
    torch.testing.assert_close(h, values["h"], atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(c, values["c"], atol=1e-12, rtol=1e-12)
    scale = torch.randn_like(h), torch.randn_like(c)
    inputs = (gates, c_prev) if weights is None else (gates, c_prev, weights)
    ours = torch.autograd.grad((h * scale[0]).sum() + (c * scale[1]).sum(), inputs)
    loss = (values["h"] * scale[0]).sum() + (values["c"] * scale[1]).sum()
    for a, b in zip(ours, torch.autograd.grad(loss, inputs)):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-7)


def _format(layout: str) -> torch.memory_format:
    return {
        "channels_last": torch.channels_last,
        "channels_last_3d": torch.channels_last_3d,
        "contiguous": torch.contiguous_format,
    }[layout]


@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
@pytest.mark.parametrize("gate", GATES)
def test_gradcheck_float64(layout, gate):
    gates, c_prev = _inputs(layout, features=2)
    kind = gate_kind(gate)
    assert torch.autograd.gradcheck(
        lambda g, c: FusedGates.apply(g, c, None, kind), (gates, c_prev)
    )
    peephole = torch.randn(3, 2, 1, 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda g, c, w: FusedGates.apply(g, c, w, kind), (gates, c_prev, peephole)
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("gate", GATES)
def test_gate_slopes_at_the_kinks_follow_autograd(dtype, gate):
    """Pre-activations at and next to the hard sigmoids' kinks, in every gate: the
    generated loops' values and gradients are autograd's of the plain equations (which
    differentiates Keras 2's clip with the slope at both ends of the linear part, and
    Keras 3's relu6 without), zero exactly where autograd's are zero."""
    kinks = kink_values(dtype)
    features, count = 16, kinks.numel()
    gates = torch.randn(2, 4 * features, 3, 4).to(dtype)
    per_gate = gates.view(2, 4, -1)  # (B, gate, F·H·W)
    for m, gate_index in enumerate((0, 1, 3)):  # i, f, o; one gate at a kink per element
        per_gate[:, gate_index, m * count : (m + 1) * count] = kinks
    gates = gates.contiguous(memory_format=torch.channels_last).requires_grad_()
    c_prev = torch.randn(2, features, 3, 4, dtype=torch.promote_types(dtype, torch.float32))
    c_prev = c_prev.contiguous(memory_format=torch.channels_last).requires_grad_()
    weights = torch.randn(c_prev.shape, dtype=c_prev.dtype), torch.randn_like(c_prev)

    def run(step):
        h, c = step()
        loss = (h.to(c.dtype) * weights[0]).sum() + (c * weights[1]).sum()
        return (h, c, *torch.autograd.grad(loss, (gates, c_prev)))

    with backend.override(simd=False):  # the generated loops (test_simd_gates: the others)
        fused = run(lambda: fused_gates(gates, c_prev, gate_kind(gate)))

    def reference_step():
        h, c = _reference(gates, c_prev, gate)
        return h.to(dtype), c

    reference = run(reference_step)
    # float64: PyTorch's hardsigmoid backward multiplies by 1/6 in single precision
    tolerance = {torch.float64: 1e-7, torch.float32: 1e-5, torch.bfloat16: 1e-2}[dtype]
    for a, b in zip(fused, reference):
        torch.testing.assert_close(a, b, atol=tolerance, rtol=tolerance)
    for a, b in zip(fused[2:], reference[2:]):  # the gradients
        assert torch.equal(a == 0, b == 0)


def test_only_hidden_state_used_and_non_contiguous_gradients():
    # h.sum() gives an expanded (stride-0) gradient and c gets none at all.
    gates, c_prev = _inputs("channels_last")
    fused = torch.autograd.grad(fused_gates(gates, c_prev)[0].sum(), (gates, c_prev))
    ref = torch.autograd.grad(_reference(gates, c_prev)[0].sum(), (gates, c_prev))
    for a, b in zip(fused, ref):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-7)


def test_inference_path_equals_training_path():
    gates, c_prev = _inputs("channels_last", dtype=torch.float32)
    with torch.no_grad():
        h_infer, c_infer = fused_gates(gates, c_prev)
    h_train, c_train = fused_gates(gates, c_prev)
    assert h_train.requires_grad and not h_infer.requires_grad
    torch.testing.assert_close(h_infer, h_train.detach(), atol=0, rtol=0)
    torch.testing.assert_close(c_infer, c_train.detach(), atol=0, rtol=0)


def test_reduced_precision_gates_keep_a_float32_cell():
    gates, c_prev = _inputs("channels_last", dtype=torch.float32)
    h, c = fused_gates(gates.to(torch.bfloat16), c_prev)
    assert h.dtype == torch.bfloat16 and c.dtype == torch.float32
    ref_h, ref_c = _reference(gates.to(torch.bfloat16), c_prev)
    torch.testing.assert_close(c, ref_c, atol=1e-6, rtol=1e-6)
    grad = torch.autograd.grad(h.float().sum(), gates)[0]
    assert grad.dtype == torch.float32  # the bf16 cast sits outside FusedGates
