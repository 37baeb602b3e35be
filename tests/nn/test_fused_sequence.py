"""FusedSequence: one layer's whole sequence as one autograd function, against the
step-by-step path with plain ops (``set_fusion("never")``)."""

import sys
from pathlib import Path

import pytest
import torch

from convlstm.nn import backend, functional, get_fusion, set_fusion
from convlstm.nn.fast import _torch, gates, sequence, simd
from convlstm.nn.fast import pool as pools
from convlstm.nn.fast.gates import _Rows
from convlstm.nn.fast.sequence import FusedSequence
from convlstm.nn.layer import ConvLSTMNd
from convlstm.nn.settings import Backend

from .conftest import GATES, perturb


@pytest.fixture
def fusion():
    """Run a callable under a fusion mode, restoring the previous mode afterwards."""
    previous = get_fusion()

    def run(mode, fn, *args, **kwargs):
        set_fusion(mode)
        try:
            return fn(*args, **kwargs)
        finally:
            set_fusion(previous)

    return run


def _layer(ndim=2, **options):
    options = {"kernel_size": 3, "hidden_channels": 3, **options}
    kernel, hidden = options.pop("kernel_size"), options.pop("hidden_channels")
    layer = ConvLSTMNd(2, hidden, kernel, ndim=ndim, **options).double()
    return perturb(layer)


def _spatial(ndim):
    return {1: (9,), 2: (6, 7), 3: (4, 5, 6)}[ndim]


def _outputs_and_grads(layer, x, state=None, **forward):
    """Forward, then gradients of a loss that uses every output, w.r.t. the input, the
    initial state (when given) and every parameter."""
    out, (h_n, c_n) = layer(x, state, **forward)
    weights = [torch.randn(t.shape, dtype=t.dtype, generator=_generator(i)) for i, t in
               enumerate((out, h_n, c_n))]  # fmt: skip
    loss = sum((t * w).sum() for t, w in zip((out, h_n, c_n), weights))
    wanted = [x, *(state or ()), *layer.parameters()]
    return (out, h_n, c_n), torch.autograd.grad(loss, wanted), out.grad_fn


def _generator(seed):
    return torch.Generator().manual_seed(seed)


def _compare(fusion, layer, x, state=None, mode="always", **forward):
    fused, fused_grads, grad_fn = fusion(mode, _outputs_and_grads, layer, x, state, **forward)
    plain, plain_grads, _ = fusion("never", _outputs_and_grads, layer, x, state, **forward)
    # PyTorch's own hardsigmoid backward multiplies by 1/6 in single precision, also for
    # float64, so the reference's gradients are off by ~3e-8 relative there.
    tolerance = 1e-6 if layer.cell(0).recurrent_activation_name == "hard_sigmoid" else 1e-10
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    for a, b in zip(fused_grads, plain_grads):
        torch.testing.assert_close(a, b, atol=tolerance, rtol=tolerance)
    return grad_fn


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"padding": "valid", "recurrent_activation": "hard_sigmoid", "bias": False},
        {"padding": "valid", "recurrent_activation": "hard_sigmoid_keras2", "bias": False},
        {"padding": 2, "kernel_size": (3, 5)},
        {"kernel_size": 4},  # even kernel: the hidden state's padding is asymmetric
        {"num_layers": 2},  # the second layer's input needs a gradient
        # more channels x taps than SMALL_UNFOLD: oneDNN's weight gradient
        {"num_layers": 2, "hidden_channels": 8},
        {"peephole": "channel"},
        {"peephole": "pixel", "spatial_size": (6, 7), "padding": "valid",
         "recurrent_activation": "hard_sigmoid"},
        {"activation": "relu"},
    ],
    ids=[
        "same", "valid-hard-nobias", "valid-keras2-nobias", "int-padding", "even-kernel",
        "stacked", "wide", "peephole-channel", "peephole-pixel", "relu",
    ],
)  # fmt: skip
@pytest.mark.parametrize("reverse", [False, True])
def test_equals_the_step_path_2d(fusion, options, reverse):
    layer = _layer(**options)
    x = torch.randn(2, 5, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    grad_fn = _compare(fusion, layer, x, reverse=reverse)
    assert "FusedSequence" in type(grad_fn).__name__


@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("checkpoint", [False, True])
@pytest.mark.parametrize("peephole", [False, "channel"])
def test_the_fast_path_size_takes_it_in_float64(fusion, fused_cells, gate, checkpoint, peephole):
    """In "auto" mode (the default) a layer at the fast path's size, 2 x 16 channels x
    48 x 48 = 73,728 cell elements per step, runs ``FusedSequence`` for every gate kind
    of the hand-written kernels, with or without peepholes, also checkpointed, and
    equals the step path."""
    layer = _layer(hidden_channels=16, recurrent_activation=gate, padding="valid",
                   peephole=peephole)  # fmt: skip
    layer.checkpoint = checkpoint
    x = torch.randn(2, 3, 2, 50, 50, dtype=torch.float64, requires_grad=True)
    grad_fn = _compare(fusion, layer, x, mode="auto")
    assert fused_cells == [id(layer.cell(0))]
    assert "FusedSequence" in type(grad_fn).__name__


@pytest.mark.parametrize("ndim", [1, 3])
def test_equals_the_step_path_1d_3d(fusion, ndim):
    layer = _layer(ndim)
    x = torch.randn(2, 4, 2, *_spatial(ndim), dtype=torch.float64, requires_grad=True)
    assert "FusedSequence" in type(_compare(fusion, layer, x)).__name__


def test_given_state_gets_gradients(fusion):
    layer = _layer(bidirectional=True)
    x = torch.randn(2, 4, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    state = tuple(torch.randn(2, 2, 3, 6, 7, dtype=torch.float64, requires_grad=True)
                  for _ in range(2))  # fmt: skip
    _compare(fusion, layer, x, state)


def test_gradcheck_float64():
    x = torch.randn(1, 3, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    h_0 = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    c_0 = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(8, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(8, dtype=torch.float64, requires_grad=True)
    pad = (1, 1, 1, 1)

    def run(*tensors):
        return FusedSequence.apply(*tensors, pad, pad, False, False)

    assert torch.autograd.gradcheck(run, (x, h_0, c_0, weight, bias))

    def zero_state(x, weight, bias):  # the first step convolves the input alone
        return FusedSequence.apply(x, None, None, weight, bias, pad, pad, True, True)

    assert torch.autograd.gradcheck(zero_state, (x, weight, bias))

    def peepholes(x, h_0, c_0, weight, peephole):  # per pixel; checkpointed in 2 segments
        return FusedSequence.apply(x, h_0, c_0, weight, None, pad, pad, False, False, 2, peephole)

    peephole = torch.randn(3, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(peepholes, (x, h_0, c_0, weight, peephole))


@pytest.mark.parametrize("used", ["output", "h_n", "c_n"])
def test_one_output_used(fusion, used):
    """Autograd passes no gradient for unused outputs; each alone must be handled."""
    layer = _layer()
    x = torch.randn(2, 4, 2, 6, 7, dtype=torch.float64, requires_grad=True)

    def grads():
        out, (h_n, c_n) = layer(x)
        chosen = {"output": out, "h_n": h_n, "c_n": c_n}[used]
        return torch.autograd.grad(chosen.square().sum(), [x, *layer.parameters()])

    for a, b in zip(fusion("always", grads), fusion("never", grads)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_output_is_saved_so_modifying_it_in_place_raises(fusion):
    """The backward reads every h from the output (as tanh's reads its result): an
    in-place change must raise, not give wrong gradients."""
    layer = _layer()
    x = torch.randn(2, 4, 2, 6, 7, dtype=torch.float64)

    def modify_then_backward():
        out, _ = layer(x)
        assert "FusedSequence" in type(out.grad_fn).__name__ and not out._is_view()
        out.mul_(3.0)
        torch.autograd.grad(out.sum(), list(layer.parameters()))

    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        fusion("always", modify_then_backward)


def test_backward_twice_with_retained_graph(fusion):
    layer = _layer()
    x = torch.randn(2, 4, 2, 6, 7, dtype=torch.float64)

    def twice():
        loss = layer(x)[0].square().sum()
        first = torch.autograd.grad(loss, list(layer.parameters()), retain_graph=True)
        return first, torch.autograd.grad(loss, list(layer.parameters()))

    first, second = fusion("always", twice)
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_bfloat16_autocast_follows_the_step_path(fusion):
    layer = ConvLSTMNd(2, 4, 3, ndim=2)
    x = torch.randn(2, 4, 2, 8, 8)

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, (h_n, c_n) = layer(x)
        grads = torch.autograd.grad(out.float().square().sum(), list(layer.parameters()))
        return out, h_n, c_n, grads

    out, h_n, c_n, grads = fusion("always", run)
    ref_out, ref_h, ref_c, ref_grads = fusion("never", run)
    assert (out.dtype, h_n.dtype, c_n.dtype) == (ref_out.dtype, ref_h.dtype, ref_c.dtype)
    assert out.dtype == torch.bfloat16 and c_n.dtype == torch.float32
    torch.testing.assert_close(out, ref_out, atol=2e-2, rtol=2e-2)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, atol=5e-2, rtol=5e-2)



@pytest.mark.parametrize("read", ["output", "h_n"])
def test_bfloat16_training_takes_the_loops_from_the_last_step(fusion, generated_loops, isa, read):
    """bfloat16 autocast at the fast path's size (8 x 16 x 32 x 32 cell elements a step),
    the loss on the output or, as classifiers read it, on the final hidden state: the
    backward's first step (the sequence's last) takes the hand-written loop as every
    other step does; before, its incoming hidden-state gradient was float32, the loop
    declined it and the first step compiled the generated loop. The gradients follow
    the step path's."""
    torch.manual_seed(0)
    layer = ConvLSTMNd(2, 16, 3, ndim=2)
    x = torch.randn(8, 3, 2, 32, 32)
    assert backend.min_fast_elements <= 8 * 16 * 32 * 32

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, (h_n, _) = layer(x)
        loss = (out if read == "output" else h_n).float().square().sum()
        return torch.autograd.grad(loss, list(layer.parameters()))

    fused = fusion("always", run)
    assert generated_loops == []
    plain = fusion("never", run)
    for a, b in zip(fused, plain):  # sums of 24,576 bfloat16 products: within 1 % of the largest
        torch.testing.assert_close(a, b, atol=1e-2 * float(b.abs().max()), rtol=0)


@pytest.mark.parametrize("channels_innermost", [False, True])
def test_the_output_gradient_in_either_layout(fusion, monkeypatch, channels_innermost):
    """The output is channels-innermost, while a loss usually hands back a contiguous
    (channels-first) gradient, which the backward transposes into rows step by step
    (one channels-innermost gradient is read as it is): both equal the step path."""
    layer = ConvLSTMNd(2, 4, 3, ndim=2)
    x = torch.randn(2, 5, 2, 6, 7, requires_grad=True)
    weight = torch.randn(2, 5, 4, 6, 7)
    if channels_innermost:
        weight = weight.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    transposed = []
    original = _Rows.step_rows

    def spy(self, t, buffer):
        transposed.append(t.stride(1) != 1)
        return original(self, t, buffer)

    monkeypatch.setattr(_Rows, "step_rows", spy)

    def grads():
        out, _ = layer(x)
        return torch.autograd.grad((out * weight).sum(), [x, *layer.parameters()])

    fused = fusion("always", grads)
    assert transposed == [not channels_innermost] * 5
    plain = fusion("never", grads)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5)


def test_an_empty_batch_with_a_channels_innermost_gradient(fusion):
    """A step whose rows are checked for being back to back may have no sample."""
    layer = ConvLSTMNd(1, 16, 3, ndim=2)
    x = torch.randn(0, 3, 1, 8, 8, requires_grad=True)
    grad = torch.randn(0, 3, 8, 8, 16).permute(0, 1, 4, 2, 3)

    def run():
        out, _ = layer(x)
        return torch.autograd.grad(out, [x, *layer.parameters()], grad)

    for a, b in zip(fusion("always", run), fusion("never", run)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("bias", [False, True])
def test_bfloat16_weight_gradient_in_two_parts_equals_the_joint_one(fusion, monkeypatch, bias):
    """One input channel and 16 hidden ones (17 stacked, a 3x3 kernel): in bfloat16 the
    hidden part's weight gradient comes from a buffer of its own and the input part's
    from a matrix product. Both sum to what the joint weight gradient gives, up to the
    rounding of each step's bfloat16 result."""
    torch.manual_seed(0)
    layer = ConvLSTMNd(1, 16, 3, ndim=2, bias=bias)
    x = torch.randn(2, 4, 1, 8, 9)
    weight = layer.cell(0).step_weight(layer.cell(0).plan((8, 9))).to(torch.bfloat16)
    assert sequence._split_weight_grad(weight, channels=1)
    assert not sequence._split_weight_grad(weight.float(), channels=1)

    def grads():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, _ = layer(x)
        assert type(out.grad_fn).__name__ == "FusedSequenceBackward"
        return torch.autograd.grad(out.float().square().sum(), list(layer.parameters()))

    hidden_fills = []
    original = sequence._Stacked.hidden

    def spy(self, h):
        hidden_fills.append(h.shape)
        return original(self, h)

    monkeypatch.setattr(sequence._Stacked, "hidden", spy)
    split = fusion("always", grads)
    assert len(hidden_fills) == 3  # every step but the first (its hidden part is zero)
    monkeypatch.setattr(backend, "split_input_columns", 0)
    joint = fusion("always", grads)
    assert len(hidden_fills) == 3
    for a, b in zip(split, joint):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2 * b.abs().max().item())


@pytest.mark.parametrize(
    "setting",
    ["lengths", "layer_norm", "stride", "elu"],
)
def test_other_cases_take_the_step_path(fusion, setting, monkeypatch):
    """The choice of path alone: the step path's compiled loop for norms and other
    activations is the plain function here (its values are tested in test_export),
    which spares a compile per case."""
    monkeypatch.setitem(gates._kernels, "lstm_pointwise", functional.lstm_pointwise)
    options = {
        "layer_norm": {"layer_norm": True},
        "stride": {"stride": 2},
        "elu": {"activation": "elu"},
    }.get(setting, {})
    layer = _layer(**options)
    x = torch.randn(2, 4, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    forward = {"lengths": torch.tensor([4, 2])} if setting == "lengths" else {}

    out = fusion("always", lambda: layer(x, **forward)[0])
    assert "FusedSequence" not in type(out.grad_fn).__name__


@pytest.mark.parametrize("options", [{}, {"bidirectional": True, "num_layers": 2}])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("slot", [False, True])
def test_inference_runs_the_same_forward(fusion, monkeypatch, options, with_state, slot):
    """Without autograd the layer runs the sequence's forward alone (no saved tensors)
    and gives the step path's results, with a fresh gate tensor per step or one slot
    for all of them."""
    if slot:
        monkeypatch.setattr(backend, "fresh_gate_bytes", 0)
    layer = _layer(**options)
    x = torch.randn(2, 4, 2, 6, 7, dtype=torch.float64)
    count = 2 * layer.num_layers if layer.bidirectional else layer.num_layers
    state = None
    if with_state:
        state = tuple(torch.randn(count, 2, 3, 6, 7, dtype=torch.float64) for _ in range(2))
    calls = []
    forward = sequence._forward

    def spy(*args, train, **options):
        calls.append(train)
        return forward(*args, train=train, **options)

    monkeypatch.setattr(sequence, "_forward", spy)
    with torch.inference_mode():
        out, (h_n, c_n) = fusion("always", layer, x, state)
        ref_out, (ref_h, ref_c) = fusion("never", layer, x, state)
    assert calls == [False] * count
    for a, b in zip((out, h_n, c_n), (ref_out, ref_h, ref_c)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_inference_of_large_gates_reuses_one_slot_for_every_step_and_call(fusion, monkeypatch):
    """Above ``backend.fresh_gate_bytes`` (glibc's default malloc maps every tensor above
    32 MiB afresh, and page-faults it in at every step) inference convolves every step's
    gates into one slot of the mapped pool, which the next call takes again; in float32
    (oneDNN's in-place add) it gives the fresh tensors' results."""
    layer, x = _w1_like(5, checkpoint=False)
    pool = pools.mapped_pool
    slot_bytes = 2 * 64 * 48 * 48 * 4
    with torch.inference_mode():
        fresh = fusion("always", layer, x)[0]
        monkeypatch.setattr(backend, "fresh_gate_bytes", slot_bytes - 1)
        pool.empty_cache()
        first = fusion("always", layer, x)[0]
        assert pool.held() == slot_bytes  # free again: the output is the caller's
        second = fusion("always", layer, x)[0]
        assert pool.held() == slot_bytes
    torch.testing.assert_close(first, fresh, atol=1e-6, rtol=1e-5)
    assert torch.equal(first, second)
    monkeypatch.setattr(backend, "fresh_gate_bytes", slot_bytes + 1)  # below it: fresh
    pool.empty_cache()
    with torch.inference_mode():
        fusion("always", layer, x)
    assert pool.held() == 0


def test_w2_inference_gates_of_exactly_32_mib_take_the_slot(fusion, monkeypatch):
    """W2 (8 x 64 x 64 frames, 64 filters) has gates of exactly 32 MiB, which glibc's
    default malloc maps afresh at every step (malloc's header puts their block above the
    32 MiB its heap takes at most): at the default ``fresh_gate_bytes`` they take the
    slot. (An off-by-one kept them fresh: 100,000 page faults and 0.61 against 0.48 s a
    call.)"""
    monkeypatch.setattr(backend, "fresh_gate_bytes", Backend().fresh_gate_bytes)
    layer = ConvLSTMNd(1, 64, 3, ndim=2, padding="same")
    x = torch.randn(8, 2, 1, 64, 64)
    pool = pools.mapped_pool
    pool.empty_cache()
    with torch.inference_mode():
        fusion("auto", layer, x)
    assert pool.held() == 8 * 4 * 64 * 64 * 64 * 4 == 32 << 20


def test_training_keeps_its_blocks_in_the_mapped_pool_and_reuses_them(fusion, monkeypatch):
    """The gates, cells and output a training step keeps come from ``mapped_pool``;
    a second step of the same size reuses the freed mappings, a kept output is never
    handed out again, and ``empty_cache`` unmaps what is free."""
    monkeypatch.setattr(backend, "mapped_min_bytes", 0)  # this test's are small
    pool = pools.mapped_pool
    pool.empty_cache()
    layer = ConvLSTMNd(2, 4, 3, ndim=2)
    x = torch.randn(2, 5, 2, 8, 8)

    def step():
        out, _ = layer(x)
        out.square().mean().backward()
        return out

    kept = fusion("always", step)
    out_bytes = kept.numel() * 4
    assert kept.untyped_storage().nbytes() == out_bytes and not kept._is_view()
    # per step: gates (B·4F·H·W) and cells (B·F·H·W) of 5 steps, and the output
    held = 5 * (2 * 16 * 64 + 2 * 4 * 64) * 4 + out_bytes
    assert pool.held() == held
    expected = kept.detach().clone()
    second = fusion("always", step)  # kept is alive: its mapping is not handed out
    torch.testing.assert_close(kept, expected, atol=0, rtol=0)
    torch.testing.assert_close(second, expected, atol=0, rtol=0)
    assert pool.held() == held + out_bytes  # gates and cells reused, a second output
    del kept, second
    third = fusion("always", step)
    assert pool.held() == held + out_bytes  # everything reused
    del third
    assert pool.empty_cache() == held + out_bytes
    assert pool.held() == 0


def _vm_flags(address: int) -> list[str]:
    """The kernel's flags of the mapping of this process that holds ``address``."""
    lines = Path("/proc/self/smaps").read_text().splitlines()
    inside = False
    for line in lines:
        head = line.split()[0]
        if "-" in head and all(c in "0123456789abcdef-" for c in head):
            start, end = (int(v, 16) for v in head.split("-"))
            inside = start <= address < end
        elif inside and line.startswith("VmFlags:"):
            return line.split()[1:]
    raise AssertionError(f"no mapping holds {address:#x}")


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux's smaps")
def test_the_pool_maps_ordinary_pages():
    """The pool does not ask for transparent huge pages (``MADV_HUGEPAGE``, the ``hg``
    flag): on the VM measured a huge page's first touch cost 0.1 to 2.1 s per GiB against
    a steady 0.43 s for ordinary pages, which doubled the first training step of the
    benchmarks' W1 and made no later step faster (docs/performance.md)."""
    pool = pools.mapped_pool
    block = pool.empty((4 << 20,), (1,), torch.float32)  # 16 MiB: eight huge pages' worth
    block.fill_(1.0)
    assert "hg" not in _vm_flags(block.data_ptr())
    del block
    pool.empty_cache()


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("with_state", [False, True])
def test_float32_training_adds_the_convolution_into_the_block(fusion, ndim, with_state):
    """In float32 on a CPU the gates are written by oneDNN's in-place convolution
    (float64, as in the tests above, takes the fallback add), also after a bfloat16 call
    on a CPU that rejects that one: the values and gradients still equal the step path."""
    if _torch._mkldnn_binary_pointwise() is None:
        pytest.skip("this PyTorch has no oneDNN in-place convolution")
    layer = ConvLSTMNd(2, 4, 3, ndim=ndim)
    x = torch.randn(2, 4, 2, *_spatial(ndim), requires_grad=True)
    state = None
    if with_state:
        shape = (1, 2, 4, *_spatial(ndim))  # (layers, B, F, *S)
        state = (torch.randn(shape, requires_grad=True), torch.randn(shape, requires_grad=True))
    calls = []
    original = sequence.convolution_add_

    def spy(out, *args):
        calls.append((out.dtype, original(out, *args)))
        return calls[-1][1]

    sequence.convolution_add_ = spy
    try:
        fused, fused_grads, _ = fusion("always", _outputs_and_grads, layer, x, state)
    finally:
        sequence.convolution_add_ = original
    plain, plain_grads, _ = fusion("never", _outputs_and_grads, layer, x, state)
    assert calls == [(torch.float32, True)] * 4  # written by oneDNN
    for a, b in zip((*fused, *fused_grads), (*plain, *plain_grads)):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5)


def test_a_dtype_the_in_place_add_rejects_falls_back_alone(monkeypatch):
    """On a CPU without AVX-512, oneDNN's in-place add raises for bfloat16; that dtype
    then takes the plain add (without asking oneDNN again) and float32 keeps oneDNN's."""
    real = _torch._mkldnn_binary_pointwise()
    if real is None:
        pytest.skip("this PyTorch has no oneDNN in-place convolution")
    calls = []

    def binary(out, *args):
        calls.append(out.dtype)
        if out.dtype == torch.bfloat16:
            raise RuntimeError("mkldnn_convolution: bf16 path needs the cpu support avx512bw")
        return real(out, *args)

    monkeypatch.setattr(_torch, "_mkldnn_binary_pointwise", lambda: binary)
    monkeypatch.setattr(_torch, "_broken", set())
    last = torch.channels_last
    inputs = torch.randn(2, 4, 6, 7).contiguous(memory_format=last)
    weight = torch.randn(8, 4, 3, 3).contiguous(memory_format=last)
    bias = torch.randn(8)
    for dtype in (torch.bfloat16, torch.float32, torch.bfloat16, torch.float32):
        out = torch.randn(2, 8, 4, 5).to(dtype).contiguous(memory_format=last)
        args = (inputs.to(dtype), weight.to(dtype), bias.to(dtype))
        expected = out + torch.nn.functional.conv2d(*args)
        added = _torch.convolution_add_(out, *args)
        assert added == (dtype == torch.float32)
        if added:
            torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    assert calls == [torch.bfloat16, torch.float32, torch.float32]


def test_the_pool_keeps_free_mappings_a_step_asks_for_again(monkeypatch):
    """Layers of different sizes, called several times a step (a forecaster's decoder):
    from the second step on, every request is served by a free mapping."""
    monkeypatch.setattr(backend, "mapped_min_bytes", 0)
    pool = pools.MappedPool()
    sizes = [4096, 8192, 4096, 12288, 8192, 4096]

    def step():
        return [pool.empty((n // 4,), (1,), torch.float32) for n in sizes]

    kept = step()
    held = pool.held()
    assert held == sum(sizes)
    del kept
    for _ in range(3):
        kept = step()
        assert pool.held() == held  # nothing unmapped and mapped again
        del kept
    other = [pool.empty((4096,), (1,), torch.float32) for _ in range(2)]  # new sizes
    assert pool.held() == held + 2 * 16384  # the free ones may still be asked for
    del other
    small = pool.empty((25,), (1,), torch.float32)
    # Now the free mappings (held + 32768 bytes) outgrow the largest working set
    # (held): the oldest are unmapped until they no longer do.
    free_after = pool.held() - 100
    assert held - 8192 < free_after <= held
    del small
    assert pool.empty_cache() == free_after + 100
    assert pool.held() == 0


@pytest.mark.parametrize(
    "options",
    [{}, {"padding": "valid", "recurrent_activation": "hard_sigmoid", "bias": False},
     {"padding": "valid", "recurrent_activation": "hard_sigmoid_keras2", "bias": False},
     {"bidirectional": True}, {"num_layers": 2}],
    ids=["same", "valid-hard-nobias", "valid-keras2-nobias", "bidirectional", "stacked"],
)  # fmt: skip
@pytest.mark.parametrize("steps,segment", [(7, 3), (6, 2), (5, 1), (4, 4), (1, 1)])
@pytest.mark.parametrize("with_state", [False, True])
def test_checkpointed_sequence_equals_the_kept_one(
    fusion, monkeypatch, options, steps, segment, with_state
):
    """``checkpoint=True`` keeps the output and one cell per segment, recomputes each
    segment's gates in the backward, and gives the same values and gradients."""
    monkeypatch.setattr(sequence, "checkpoint_segment", lambda steps: segment)
    layer = _layer(**options)
    x = torch.randn(2, steps, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    state = None
    if with_state:
        directions = 2 if options.get("bidirectional") else 1
        spatial = (4, 5) if options.get("padding") == "valid" else (6, 7)
        shape = (layer.num_layers * directions, 2, 3, *spatial)
        state = tuple(torch.randn(shape, dtype=torch.float64, requires_grad=True)
                      for _ in range(2))  # fmt: skip

    def saved(checkpoint):
        layer.checkpoint = checkpoint
        out = fusion("always", layer, x, state)[0]  # alive: on torch 2.6 its death frees
        fn = out.grad_fn  # the node's saved output, and saved_tensors then raises
        return type(fn).__name__, len(fn.saved_tensors) if hasattr(fn, "saved_tensors") else 0

    kept, kept_grads, _ = fusion("always", _outputs_and_grads, layer, x, state)
    layer.checkpoint = True
    recomputed, recomputed_grads, _ = fusion("always", _outputs_and_grads, layer, x, state)
    if not options.get("bidirectional") and not options.get("num_layers"):
        # x, h_0, output, weight, bias, peepholes, c_0, then the cell before every later
        # segment (instead of every step's cell and gates)
        segments = -(-steps // segment)
        assert saved(True) == ("FusedSequenceBackward", 7 + segments - 1)
        assert saved(False) == ("FusedSequenceBackward", 7 + 2 * steps)
    for a, b in zip(recomputed, kept):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
    for a, b in zip(recomputed_grads, kept_grads):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def _w1_like(steps, checkpoint):
    """A W1-like layer (1 channel, 16 filters, valid 3x3, hard sigmoid, no bias) at the
    fast path's size: 2 x 16 x 48 x 48 = 73,728 cell elements per step."""
    layer = ConvLSTMNd(1, 16, 3, ndim=2, padding="valid", bias=False,
                       recurrent_activation="hard_sigmoid", checkpoint=checkpoint)  # fmt: skip
    return perturb(layer), torch.randn(2, steps, 1, 50, 50)


@pytest.mark.parametrize("mode", ["auto", "never"])
def test_checkpointed_at_the_fast_path_size_equals_the_kept_one(fusion, fused_cells, mode):
    """At the fast path's size, over enough steps for several segments of the real
    ``checkpoint_segment``, ``checkpoint=True`` gives the values and gradients of the
    kept sequence, on the fast path ("auto") and on the step path ("never", every step
    recomputed by ``torch.utils.checkpoint``)."""
    steps = 26
    assert steps // sequence.checkpoint_segment(steps) >= 4
    layer, x = _w1_like(steps, checkpoint=False)
    x.requires_grad_(True)
    kept, kept_grads, _ = fusion(mode, _outputs_and_grads, layer, x)
    layer.checkpoint = True
    ran = len(fused_cells)
    recomputed, recomputed_grads, grad_fn = fusion(mode, _outputs_and_grads, layer, x)
    assert ("FusedSequence" in type(grad_fn).__name__) == (mode == "auto")
    assert len(fused_cells) - ran == (mode == "auto")
    for a, b in zip((*recomputed, *recomputed_grads), (*kept, *kept_grads)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_checkpointed_backward_keeps_cells_not_gates(fusion, monkeypatch):
    """A checkpointed sequence's memory beyond its output grows as ``sqrt(T)`` cells: the
    forward keeps the cell before every segment of ``round(sqrt(T))`` steps, and the
    backward recomputes a segment's cells only, and the gates of one step at a time
    from the heap, as the gradients (the pool then holds one segment's cells and a
    recomputed h more)."""
    monkeypatch.setattr(backend, "mapped_min_bytes", 0)
    pool = pools.mapped_pool
    steps = 36
    segment = sequence.checkpoint_segment(steps)
    assert segment == 6
    layer, x = _w1_like(steps, checkpoint=True)
    pool.empty_cache()
    out, _ = fusion("always", layer, x)
    cell = 2 * 16 * 48 * 48 * 4
    assert pool.held() == out.numel() * 4 + (steps // segment - 1) * cell
    out.square().mean().backward()
    backward = segment * cell + cell
    assert pool.held() == out.numel() * 4 + (steps // segment - 1) * cell + backward


def test_checkpointed_bfloat16_equals_the_kept_one_and_keeps_less(fusion, monkeypatch):
    """Under bfloat16 autocast the backward recomputes in bfloat16 (not in the
    backward's own float32); the pool holds the output and the segment cells only."""
    monkeypatch.setattr(backend, "mapped_min_bytes", 0)
    pool = pools.mapped_pool
    layer = ConvLSTMNd(1, 16, 3, ndim=2, padding="valid", recurrent_activation="hard_sigmoid")
    x = torch.randn(2, 9, 1, 10, 12)
    assert sequence.checkpoint_segment(9) == 3

    def grads(checkpoint):
        layer.checkpoint = checkpoint
        pool.empty_cache()  # only what is in use stays (the other call's output)
        before = pool.held()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, _ = layer(x)
        held = pool.held() - before
        out.float().square().mean().backward()
        result = [p.grad.clone() for p in layer.parameters()]
        layer.zero_grad(set_to_none=True)
        return out.detach(), result, held

    kept_out, kept_grads, kept_held = fusion("always", grads, False)
    out, recomputed_grads, held = fusion("always", grads, True)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, kept_out, atol=0, rtol=0)
    for a, b in zip(recomputed_grads, kept_grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    cell = 2 * 16 * 8 * 10 * 4  # float32 (B, F, H', W')
    output = out.numel() * 2
    assert held == output + 2 * cell  # the cells after steps 3 and 6
    assert kept_held == output + 9 * (cell + 4 * cell // 2)  # every cell and bf16 gates


def test_without_anonymous_mappings_the_pool_serves_from_the_heap(fusion, monkeypatch):
    """Where the OS has no anonymous mappings (Windows), training still takes the fast
    path, with the kept blocks from the heap."""
    monkeypatch.setattr(backend, "mapped_min_bytes", 0)
    monkeypatch.setattr(pools, "ANONYMOUS_MAPPINGS", False)
    pool = pools.mapped_pool
    pool.empty_cache()
    layer = ConvLSTMNd(2, 4, 3, ndim=2)
    x = torch.randn(2, 5, 2, 8, 8, requires_grad=True)

    def step():
        out, _ = layer(x)
        out.square().mean().backward()
        return out.detach(), x.grad.clone()

    out, grad = fusion("always", step)
    assert pool.held() == 0
    x.grad = None
    ref_out, ref_grad = fusion("never", step)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grad, ref_grad, atol=1e-5, rtol=1e-4)


def test_a_layer_runs_on_the_meta_device():
    """Devices without autocast (meta; MPS on older torch) take the plain path."""
    with torch.device("meta"):
        layer = ConvLSTMNd(1, 16, 3, ndim=2)
        out, (h_n, _) = layer(torch.empty(2, 3, 1, 48, 48))
    assert out.shape == (2, 3, 16, 48, 48) and out.device.type == "meta"
    assert h_n.shape == (1, 2, 16, 48, 48)


def test_w2_training_backward_reuses_one_gate_gradient_slot(fusion, monkeypatch):
    """The backward's gate gradient of a step is as large as its gates (W2: exactly 32
    MiB, which glibc's default malloc maps and page-faults afresh every step): from
    ``fresh_gate_bytes`` on, every step of the backward writes it into one slot of the
    mapped pool (a W2 training step made 137,000 page faults, 82,000 of them these)."""
    if simd._kernel("backward") is None:
        pytest.skip("no hand-written backward loop on this CPU")
    layer = ConvLSTMNd(1, 64, 3, ndim=2, padding="same")
    x = torch.randn(8, 3, 1, 64, 64)
    pool = pools.mapped_pool
    pointers, backward = [], simd.backward

    def spy(*args, **kwargs):
        result = backward(*args, **kwargs)
        pointers.append(None if result is None else result[0].data_ptr())
        return result

    monkeypatch.setattr(simd, "backward", spy)
    held = {}
    for limit in (sys.maxsize, Backend().fresh_gate_bytes):
        monkeypatch.setattr(backend, "fresh_gate_bytes", limit)
        pool.empty_cache()
        pointers.clear()
        fusion("auto", layer, x)[0].square().sum().backward()
        held[limit] = pool.held()
    assert len(pointers) == 3 and len(set(pointers)) == 1
    assert held[Backend().fresh_gate_bytes] - held[sys.maxsize] == 32 << 20



@pytest.mark.parametrize("encoder", [False, True])
@pytest.mark.parametrize("steps", [1, 10])
def test_a_stack_feeding_a_head_takes_the_loops_alone(
    fusion, generated_loops, isa, steps, encoder
):
    """A two-layer stack as encoder-forecasters use it (8 x 32 x 16 x 16 cell elements
    a step, a MovingDigits forecaster's, above the fast path's threshold), its last
    outputs or (``encoder``) only its final states read by a head. In the encoder
    case the lower layer's output gradient is the upper layer's input gradient alone,
    laid out with each pixel's steps together, so a step's rows are not back to back:
    before, the backward then compiled a generated loop in its first step (14 s with
    an empty cache). The hand-written loops take every step, and the gradients equal
    the step path's."""
    torch.manual_seed(0)
    layer = ConvLSTMNd(16, [32, 32], 3, ndim=2, return_all_layers=True)
    head = torch.nn.Conv2d(64, 16, 1)
    x = torch.randn(8, steps, 16, 16, 16, requires_grad=True)
    assert backend.min_fast_elements <= 8 * 32 * 16 * 16

    def grads():
        outputs, states = layer(x)
        if encoder:  # only the final states go on, to a forecaster
            features = torch.cat([h for h, _ in states], 1)
        else:
            features = torch.cat([o[:, -1] for o in outputs], 1)
        loss = head(features).square().mean()
        return torch.autograd.grad(loss, [x, *layer.parameters()])

    fused = fusion("always", grads)
    assert generated_loops == []
    plain = fusion("never", grads)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5)
