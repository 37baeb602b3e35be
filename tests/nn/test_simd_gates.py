"""The hand-written gate loops against the generated ones (``fast.gates``), and their
use by ``FusedSequence`` and ``FusedGates``."""

import pytest
import torch

from convlstm.nn import ConvLSTMCell2d, backend, get_fusion, set_fusion
from convlstm.nn.fast import simd
from convlstm.nn.fast._torch import cpu_vector_isa
from convlstm.nn.fast.gates import (
    _compiled,
    _peephole_backward,
    _peephole_forward,
    _step_backward,
    _step_forward,
    fused_gates,
)
from convlstm.nn.layer import ConvLSTMNd

from .conftest import GATES, gate_kind, kink_values

pytestmark = [
    pytest.mark.skipif(
        not backend.simd, reason="the loops are switched off (CONVLSTM_SIMD_GATES=0)"
    ),
    pytest.mark.skipif(
        cpu_vector_isa() is None or simd._kernel("forward") is None,
        reason="needs a CPU with AVX-512 BF16 or AVX2, and a C++ compiler",
    ),
]


@pytest.fixture(autouse=True)
def _restore_switch():
    """Tests switch the loops off to compare; the rest of the run gets them as it had."""
    previous = backend.simd
    yield
    backend.simd = previous

BF16 = torch.bfloat16
ULP = 2.0**-7  # of bfloat16, relative


def _step_inputs(batch=3, size=(5, 7), width=32, scale=3.0, dtype=BF16):
    rows = batch * size[0] * size[1]
    z = (torch.randn(rows, 4, width) * scale).to(dtype)
    c_prev = torch.randn(rows, width) * 2
    return z, c_prev


def _sequence_step(batch, size, width, steps=4, t=2, dtype=BF16):
    """A step ``(B, *S, F)`` view of a ``(B, T, *S, F)`` sequence (rows of a strided h)."""
    return torch.zeros(batch, steps, *size, width, dtype=dtype)[:, t]


def _close(actual, expected):
    """bfloat16: equal up to one rounding (the loops differ in float32 rounding first);
    float32: within a few units of float32 rounding."""
    if actual.dtype == torch.float32:
        torch.testing.assert_close(actual, expected, atol=2e-6, rtol=2e-6)
        return
    actual, expected = actual.float(), expected.float()
    tolerance = ULP * expected.abs() + 1e-6
    assert ((actual - expected).abs() <= tolerance).all()
    assert (actual == expected).float().mean() > 0.99  # most round the same way


@pytest.mark.parametrize("dtype", [BF16, torch.float32])
@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("width", [16, 48, 24])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_forward_equals_the_generated_loop(dtype, gate, width, activation, isa):
    hard = gate_kind(gate, activation)
    z, c_prev = _step_inputs(width=width, dtype=dtype)
    h = _sequence_step(3, (5, 7), width, dtype=dtype)
    c = torch.empty_like(c_prev)
    whole_vectors = width % simd.lanes() == 0  # 24: of 8 lanes (AVX2), not of 16
    assert simd.forward(z, c_prev, hard, h, c) == whole_vectors
    if not whole_vectors:
        return
    h_ref, c_ref = _compiled("forward", _step_forward)(z, c_prev, hard)
    torch.testing.assert_close(c, c_ref, atol=2e-6, rtol=2e-6)
    _close(h.reshape(h_ref.shape), h_ref)
    in_place = c_prev.clone()
    assert simd.forward(z, in_place, hard, h, in_place)
    torch.testing.assert_close(in_place, c, atol=0, rtol=0)


@pytest.mark.parametrize("dtype", [BF16, torch.float32])
@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("more", [False, True])
@pytest.mark.parametrize("kinks", [False, True])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_backward_equals_the_generated_loop(dtype, gate, more, kinks, activation, isa):
    """Also with pre-activations at and next to the hard sigmoids' kinks, where the
    loops' slopes must be zero at the same places (one gate at a kink per row: with
    every gate near 0, the cell is, and so tanh(c) = 2σ(2c) - 1 within float32 rounding
    of 0, which may round to 0 in one loop and not in the other), and candidates at
    relu's kink, 0."""
    hard = gate_kind(gate, activation)
    z, c_prev = _step_inputs(dtype=dtype)
    if kinks:
        for n, value in enumerate(kink_values(dtype)):
            for m, gate_index in enumerate((0, 1, 3)):  # i, f, o
                z[3 * n + m, gate_index, :16] = value
        z[::2, 2, 16:] = 0
    c = _compiled("forward", _step_forward)(z, c_prev, hard)[1]
    dh = torch.randn(c.shape).to(dtype)
    dc_out = torch.randn(c.shape)
    dh_more = None
    if more:
        dh_more = _sequence_step(3, (5, 7), 32, dtype=dtype)
        dh_more.copy_(torch.randn(dh_more.shape))
    dz, dc_prev = simd.backward(dh, dc_out, z, c, c_prev, hard, dh_more)
    dz_ref, dc_ref = _compiled("backward", _step_backward)(
        dh, dc_out, z, c, c_prev, hard, dtype, dh_more
    )
    assert dz.dtype == dtype and dc_prev.dtype == torch.float32
    torch.testing.assert_close(dc_prev, dc_ref, atol=1e-5, rtol=1e-5)
    _close(dz, dz_ref)
    assert torch.equal(dz == 0, dz_ref == 0)


@pytest.mark.parametrize("dtype", [BF16, torch.float32])
@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("weight_rows", [1, 35])
@pytest.mark.parametrize("more", [False, True])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_peephole_loops_equal_the_generated_ones(dtype, gate, weight_rows, more, activation, isa):
    """With peepholes, rows taking weight row ``r % P``: one row for all (channels-first
    rows) or the 35 pixels of a sample (channels-last). Forward, backward and the
    weights' gradient, which the loop adds into what it is given, summed over the 3
    samples in float32."""
    kind = gate_kind(gate, activation)
    z, c_prev = _step_inputs(dtype=dtype)
    peep = torch.randn(3, weight_rows, 32)
    h = _sequence_step(3, (5, 7), 32, dtype=dtype)
    c = torch.empty_like(c_prev)
    assert simd.forward(z, c_prev, kind, h, c, peep)
    h_ref, c_ref = _compiled("peephole forward", _peephole_forward)(z, c_prev, kind, peep)
    torch.testing.assert_close(c, c_ref, atol=2e-6, rtol=2e-6)
    _close(h.reshape(h_ref.shape), h_ref)
    dh, dc_out = torch.randn(c.shape).to(dtype), torch.randn(c.shape)
    dh_more = None
    if more:
        dh_more = _sequence_step(3, (5, 7), 32, dtype=dtype)
        dh_more.copy_(torch.randn(dh_more.shape))
    earlier = torch.randn(peep.shape)  # a gradient summed over earlier steps
    d_peep = earlier.clone()
    dz, dc_prev = simd.backward(dh, dc_out, z, c, c_prev, kind, dh_more, None, peep, d_peep)
    dz_ref, dc_ref, d_peep_ref = _compiled("peephole backward", _peephole_backward)(
        dh, dc_out, z, c, c_prev, kind, dtype, peep, dh_more
    )
    torch.testing.assert_close(dc_prev, dc_ref, atol=1e-5, rtol=1e-5)
    _close(dz, dz_ref)
    torch.testing.assert_close(d_peep, earlier + d_peep_ref, atol=1e-4, rtol=1e-5)
    no_peepholes = simd.backward(dh, dc_out, z, c, c_prev, kind, dh_more)
    assert not torch.allclose(no_peepholes[1], dc_prev)  # the weights' paths count


def test_peephole_weights_that_do_not_fit_are_declined(isa):
    z, c_prev = _step_inputs(width=16)
    h, c = _sequence_step(3, (5, 7), 16), torch.empty_like(c_prev)
    peep = torch.randn(3, 35, 16)
    assert not simd.forward(z, c_prev, 0, h, c, peep[:, :34])  # 34 does not divide 105
    assert not simd.forward(z, c_prev, 0, h, c, peep.double())
    assert not simd.forward(z, c_prev, 0, h, c, peep.transpose(1, 2).contiguous().mT)
    dh = torch.zeros(c.shape, dtype=BF16)
    assert simd.backward(dh, c, z, c, c_prev, 0, None, None, peep, None) is None
    assert simd.backward(dh, c, z, c, c_prev, 0, None, None, peep, peep.double()) is None


def test_saturation_and_nan(isa):
    """Large pre-activations saturate the gates exactly; a NaN stays NaN."""
    z, c_prev = _step_inputs(batch=1, size=(1, 4), width=16)
    z[0] = 200.0
    z[1] = -200.0
    z[2, 2] = float("nan")
    h = torch.empty(1, 4, 16, dtype=BF16)
    c = torch.empty_like(c_prev)
    assert simd.forward(z, c_prev, False, h, c)
    torch.testing.assert_close(c[0], c_prev[0] + 1)  # i = f = g = 1
    expected_h = torch.tanh(c[0]).to(BF16).float()
    torch.testing.assert_close(h[0, 0].float(), expected_h, atol=0.01, rtol=0)
    torch.testing.assert_close(c[1], torch.zeros(16))  # i = f = 0
    assert h[0, 1].eq(0).all()
    assert c[2].isnan().all() and h[0, 2].isnan().all()
    assert not c[3].isnan().any()


def test_not_applicable_cases_are_declined(isa):
    z, c_prev = _step_inputs(width=16)
    h = _sequence_step(3, (5, 7), 16)
    c = torch.empty_like(c_prev)
    assert not simd.forward(z.float(), c_prev, True, h, c)  # h of another dtype
    assert not simd.forward(z.double(), c_prev, True, h.double(), c)  # float64
    assert not simd.forward(z[..., :4], c_prev[:, :4], True, h[..., :4], c[:, :4])
    assert not simd.forward(z, c_prev, True, h.transpose(1, 2), c)  # not rows
    dh = torch.zeros(c.shape, dtype=BF16)
    assert simd.backward(dh.float(), c, z, c, c_prev, True, None) is None
    assert simd.backward(dh, c, z, c, c_prev, True, h.float()) is None
    backend.simd = False
    assert not simd.forward(z, c_prev, True, h, c)


@pytest.fixture
def calls(monkeypatch):
    """Counts of the steps the hand-written loops ran (not declined)."""
    counts = {"forward": 0, "backward": 0}
    forward, backward = simd.forward, simd.backward

    def count_forward(*args):
        done = forward(*args)
        counts["forward"] += done
        return done

    def count_backward(*args):
        result = backward(*args)
        counts["backward"] += result is not None
        return result

    monkeypatch.setattr(simd, "forward", count_forward)
    monkeypatch.setattr(simd, "backward", count_backward)
    return counts


@pytest.fixture
def always_fused():
    previous = get_fusion()
    set_fusion("always")
    yield
    set_fusion(previous)


@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("autocast", [True, False])
def test_fused_sequence_uses_them_and_equals_the_generated_loops(
    calls, always_fused, gate, autocast
):
    """Training with 16 hidden channels: every forward step and every backward step
    runs the hand-written loops, also under bfloat16 autocast (the first backward
    step's zero gradient of h is in the gates' dtype), with the generated loops'
    outputs and gradients."""
    layer = ConvLSTMNd(2, 16, 3, ndim=2, recurrent_activation=gate)
    x = torch.randn(2, 5, 2, 9, 8)

    def run():
        with torch.autocast("cpu", dtype=BF16, enabled=autocast):
            out, (h_n, c_n) = layer(x)
        assert type(out.grad_fn).__name__ == "FusedSequenceBackward"
        grads = torch.autograd.grad(out.float().square().sum(), list(layer.parameters()))
        return out, h_n, c_n, grads

    out, h_n, c_n, grads = run()
    expected = {"forward": 5, "backward": 5}
    assert calls == expected
    backend.simd = False
    ref_out, ref_h, ref_c, ref_grads = run()
    assert calls == expected
    assert h_n[0].data_ptr() != out[:, -1].data_ptr()  # h_n is no view of the output
    torch.testing.assert_close(h_n[0], out[:, -1], atol=0, rtol=0)
    tolerance = 2e-2 if autocast else 1e-5
    torch.testing.assert_close(out, ref_out, atol=tolerance, rtol=tolerance)
    torch.testing.assert_close(c_n, ref_c, atol=tolerance, rtol=tolerance)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, atol=tolerance * b.abs().max().item(), rtol=tolerance)


def test_inference_updates_a_cell_of_its_own(calls, always_fused):
    """Without gradients the cell is updated in place, in a tensor of its own: a given
    float32 initial cell is left as it was."""
    layer = ConvLSTMNd(2, 16, 3, ndim=2)
    x = torch.randn(2, 4, 2, 6, 6)
    h_0 = torch.randn(2, 16, 6, 6).contiguous(memory_format=torch.channels_last)[None]
    c_0 = torch.randn(2, 16, 6, 6).contiguous(memory_format=torch.channels_last)[None]
    before = c_0.clone()
    with torch.no_grad(), torch.autocast("cpu", dtype=BF16):
        out, (_, c_n) = layer(x, (h_0, c_0))
        assert calls["forward"] == 4
        backend.simd = False
        ref_out, (_, ref_c) = layer(x, (h_0, c_0))
    assert calls["forward"] == 4
    torch.testing.assert_close(c_0, before, atol=0, rtol=0)
    torch.testing.assert_close(out, ref_out, atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(c_n, ref_c, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("dtype", [BF16, torch.float32])
@pytest.mark.parametrize("gate", GATES)
def test_fused_gates_use_them(calls, always_fused, dtype, gate):
    """A cell stepped on its own (``FusedGates``): forward and backward run the
    hand-written loops, with the generated loops' values and gradients."""
    gates = torch.randn(2, 64, 5, 6).contiguous(memory_format=torch.channels_last)
    gates = (gates * 2).to(dtype).requires_grad_()
    c_prev = torch.randn(2, 16, 5, 6, requires_grad=True)
    weights = torch.randn(2, 16, 5, 6), torch.randn(2, 16, 5, 6)

    def run():
        h, c = fused_gates(gates, c_prev, gate_kind(gate))
        loss = (h.float() * weights[0]).sum() + (c * weights[1]).sum()
        return h, c, torch.autograd.grad(loss, [gates, c_prev])

    h, c, grads = run()
    assert calls == {"forward": 1, "backward": 1}
    backend.simd = False
    ref_h, ref_c, ref_grads = run()
    assert calls == {"forward": 1, "backward": 1}
    assert h.dtype == dtype and c.dtype == torch.float32
    assert h.is_contiguous(memory_format=torch.channels_last)
    _close(h, ref_h)
    torch.testing.assert_close(c, ref_c, atol=2e-6, rtol=2e-6)
    _close(grads[0], ref_grads[0])
    torch.testing.assert_close(grads[1], ref_grads[1], atol=1e-5, rtol=1e-5)


# 2 x 16 channels x 48 x 48 = 73,728 cell elements per step: the fast path's size in
# set_fusion("auto"), the default.
BATCH, CHANNELS, SIZE = 2, 16, 48


@pytest.fixture
def auto_fusion():
    """Run under "auto" fusion (the default), restoring the previous mode afterwards."""
    previous = get_fusion()
    set_fusion("auto")
    yield
    set_fusion(previous)


def _against_the_reference(run, tolerance):
    """``run()`` (values, then gradients) in "auto" mode, and again with plain ops
    (``set_fusion("never")``, the eager reference): equal within ``tolerance``, the
    gradients relative to their largest entry."""
    values, grads = run()
    set_fusion("never")
    ref_values, ref_grads = run()
    set_fusion("auto")
    for a, b in zip(values, ref_values):
        assert a.dtype == b.dtype
        torch.testing.assert_close(a, b, atol=tolerance, rtol=tolerance)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, atol=tolerance * b.abs().max().item(), rtol=tolerance)


@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize(
    ("activation", "peephole"),
    [("tanh", False), ("tanh", "channel"), ("tanh", "pixel"), ("relu", False), ("relu", "pixel")],
)
@pytest.mark.parametrize("checkpoint", [False, True])
def test_a_layer_at_the_fast_path_size_runs_them(
    fused_cells, calls, generated_loops, auto_fusion, gate, autocast, activation, peephole,
    checkpoint,
):  # fmt: skip
    """A layer at the fast path's size trains through ``FusedSequence`` (with
    ``checkpoint=True`` in segments, recomputing every step's forward once), every step on
    the hand-written loops (no loop is generated, so a first step compiles nothing), and
    equals the eager reference in float32 and under bfloat16 autocast: the usual cell,
    Shi et al.'s with peepholes per channel or per pixel (their gradient included), and
    cells with relu as their activation (as in Keras's next-frame example)."""
    steps = 4
    options = {"spatial_size": (SIZE, SIZE)} if peephole == "pixel" else {}
    layer = ConvLSTMNd(1, CHANNELS, 3, ndim=2, recurrent_activation=gate, peephole=peephole,
                       activation=activation, checkpoint=checkpoint, **options)  # fmt: skip
    if peephole:
        with torch.no_grad():
            layer.cell(0).peephole_weight.normal_(0, 0.5)
    x = torch.randn(BATCH, steps, 1, SIZE, SIZE, requires_grad=True)

    def run():
        with torch.autocast("cpu", dtype=BF16, enabled=autocast):
            out, (h_n, c_n) = layer(x)
        loss = (out.float().square().sum() + c_n.square().sum()) / out.numel()
        return (out, h_n, c_n), torch.autograd.grad(loss, [x, *layer.parameters()])

    _against_the_reference(run, 2e-2 if autocast else 2e-5)
    assert fused_cells == [id(layer.cell(0))]
    forward = 2 * steps if checkpoint else steps
    assert calls == {"forward": forward, "backward": steps}
    assert generated_loops == []


@pytest.mark.parametrize(("ndim", "size"), [(1, (4096,)), (3, (8, 24, 24))])
@pytest.mark.parametrize("peephole", ["channel", "pixel"])
def test_1d_and_3d_peephole_relu_layers_run_them(
    calls, generated_loops, auto_fusion, ndim, size, peephole
):
    """The peepholes' rows in the other layouts: contiguous 1-D steps (one weight row of
    ``F·N``) and channels-last 3-D ones (a row per voxel), relu cells, on the loops and
    equal to the eager reference."""
    options = {"spatial_size": size} if peephole == "pixel" else {}
    layer = ConvLSTMNd(1, CHANNELS, 3, ndim=ndim, peephole=peephole, activation="relu",
                       **options)  # fmt: skip
    with torch.no_grad():
        layer.cell(0).peephole_weight.normal_(0, 0.5)
    x = torch.randn(BATCH, 3, 1, *size, requires_grad=True)

    def run():
        out, (h_n, c_n) = layer(x)
        loss = (out.square().sum() + c_n.square().sum()) / out.numel()
        return (out, h_n, c_n), torch.autograd.grad(loss, [x, *layer.parameters()])

    _against_the_reference(run, 2e-5)
    assert calls == {"forward": 3, "backward": 3}
    assert generated_loops == []


@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize(
    ("activation", "peephole"),
    [("tanh", False), ("tanh", "channel"), ("tanh", "pixel"), ("relu", "channel")],
)
def test_a_cell_step_at_the_fast_path_size_runs_them(
    calls, generated_loops, auto_fusion, gate, autocast, activation, peephole
):
    """A cell stepped on its own at the fast path's size (``FusedGates``), with or
    without peepholes, tanh or relu: forward and backward run the hand-written loops and
    equal the eager reference."""
    options = {"spatial_size": (SIZE, SIZE)} if peephole == "pixel" else {}
    cell = ConvLSTMCell2d(1, CHANNELS, 3, recurrent_activation=gate, peephole=peephole,
                          activation=activation, **options)  # fmt: skip
    if peephole:
        with torch.no_grad():
            cell.peephole_weight.normal_(0, 0.5)
    x = torch.randn(BATCH, 1, SIZE, SIZE, requires_grad=True)
    state = tuple(torch.randn(BATCH, CHANNELS, SIZE, SIZE) for _ in range(2))

    def run():
        with torch.autocast("cpu", dtype=BF16, enabled=autocast):
            h, c = cell(x, state)
        loss = (h.float().square().sum() + c.square().sum()) / h.numel()
        return (h, c), torch.autograd.grad(loss, [x, *cell.parameters()])

    _against_the_reference(run, 2e-2 if autocast else 2e-5)
    assert calls == {"forward": 1, "backward": 1}
    assert generated_loops == []


@pytest.mark.parametrize("dtype", [BF16, torch.float32])
@pytest.mark.parametrize(
    ("channels", "kernel", "bias", "layout"),
    [
        (1, (3, 3), False, torch.channels_last),
        (1, (3, 3), True, torch.contiguous_format),
        (3, (3, 5), True, torch.channels_last),
        (7, (3, 3), False, torch.contiguous_format),  # 63 taps: 8 passes of 8 and 7
        (17, (3, 3), True, torch.channels_last),  # a stacked step: 154 columns
    ],
)
def test_weight_grad_equals_the_exact_one(dtype, channels, kernel, bias, layout, isa):
    """Against float64 ``conv2d_weight`` of the same (rounded) values: float32 sums of
    ~600 products per sample."""
    batch, outputs, height, width = 3, 32, 6, 11
    inputs = torch.randn(batch, channels, height + kernel[0] - 1, width + kernel[1] - 1)
    inputs = inputs.to(dtype).contiguous(memory_format=layout)
    dz = torch.randn(batch, outputs, height, width).to(dtype)
    dz = dz.contiguous(memory_format=torch.channels_last)
    dw, db = simd.weight_grad(dz, inputs, kernel, bias)
    shape = (outputs, channels, *kernel)
    exact = torch.nn.grad.conv2d_weight(inputs.double(), shape, dz.double())
    assert dw.dtype == torch.float32 and dw.shape == shape
    torch.testing.assert_close(dw.double(), exact, atol=1e-4, rtol=1e-5)
    if bias:
        torch.testing.assert_close(db.double(), dz.double().sum((0, 2, 3)), atol=1e-4, rtol=1e-5)
    else:
        assert db is None


def test_weight_grad_declines(isa):
    dz = torch.randn(2, 32, 4, 4).contiguous(memory_format=torch.channels_last)
    inputs = torch.randn(2, 1, 6, 6)
    assert simd.weight_grad(dz, inputs, (3, 3), False) is not None
    assert simd.weight_grad(dz[:, :20], inputs, (3, 3), False) is None  # O % lanes
    assert simd.weight_grad(dz.contiguous(), inputs, (3, 3), False) is None
    assert simd.weight_grad(dz, inputs[..., :5], (3, 3), False) is None
    assert simd.weight_grad(dz.double(), inputs.double(), (3, 3), False) is None


@pytest.fixture
def weight_grad_results(monkeypatch) -> list:
    """What each call of ``simd.weight_grad`` returned (``None`` where it declined)."""
    results = []
    loop = simd.weight_grad
    monkeypatch.setattr(simd, "weight_grad", lambda *a: results.append(loop(*a)) or results[-1])
    return results


@pytest.mark.parametrize("dtype", [torch.float32, BF16])
def test_w1_stacked_weight_grad_takes_the_avx2_loop(weight_grad_results, isa, dtype):
    """A W1 training step's stacked weight gradient (17 channels x 9 taps, 4 x 118 x 158
    outputs of 64 channels): with the AVX2 loops it takes the hand-written loop (oneDNN's
    AVX2 weight gradient took twice as long), with AVX-512 oneDNN's; both equal the
    float32 sums within their rounding (oneDNN's bfloat16 result: one bfloat16 rounding)."""
    from convlstm.nn.fast.sequence import step_weight_grad

    inputs = torch.randn(4, 17, 120, 160).to(dtype).contiguous(memory_format=torch.channels_last)
    dz = torch.randn(4, 64, 118, 158).to(dtype).contiguous(memory_format=torch.channels_last)
    weight = torch.empty(64, 17, 3, 3, dtype=dtype)
    dw, db = step_weight_grad(dz, inputs, weight, True)
    assert len(weight_grad_results) == (1 if isa == "avx2" else 0)
    assert all(result is not None for result in weight_grad_results)
    _, ref_dw, ref_db = torch.ops.aten.convolution_backward(
        dz.float(), inputs.float(), weight.float(), [64], [1, 1], [0, 0], [1, 1], False,
        [0, 0], 1, [False, True, True],
    )  # fmt: skip
    for actual, expected in ((dw, ref_dw), (db, ref_db)):
        scale = expected.abs().max().item()
        rounding = 2.0**-8 if actual.dtype == BF16 else 0.0
        torch.testing.assert_close(actual.float(), expected, atol=2e-5 * scale, rtol=rounding)
    if isa == "avx2":
        with backend.override(avx2_weight_grad=False):
            step_weight_grad(dz, inputs, weight, True)
        assert len(weight_grad_results) == 1  # switched off: oneDNN's


def test_a_cell_stepped_alone_takes_the_avx2_weight_grad_loop(
    weight_grad_results, isa, auto_fusion
):
    """A cell stepped on its own (``FusedGates`` and ``StepConv``, as a forecaster's
    decoder steps it) at W1's size: its stacked weight gradient takes the hand-written
    loop with the AVX2 loops, as ``FusedSequence``'s does, and equals the reference."""
    cell = ConvLSTMCell2d(1, 16, 3, recurrent_activation="hard_sigmoid")
    x = torch.randn(4, 1, 120, 160, requires_grad=True)
    state = tuple(torch.randn(4, 16, 120, 160) for _ in range(2))

    def run():
        h, c = cell(x, state)
        loss = (h.square().sum() + c.square().sum()) / h.numel()
        return (h, c), torch.autograd.grad(loss, [x, *cell.parameters()])

    _against_the_reference(run, 2e-5)
    assert len(weight_grad_results) == (1 if isa == "avx2" else 0)  # the eager reference takes none
    assert all(result is not None for result in weight_grad_results)
