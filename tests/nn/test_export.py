"""torch.compile, the fused gate kernel, autocast, channels-last and ONNX export."""

import warnings

import pytest
import torch

import convlstm
from convlstm import ConvLSTM2d
from convlstm.nn import functional

from .conftest import perturb


@pytest.fixture
def fusion_always():
    previous = functional.get_fusion()
    convlstm.set_fusion("always")
    yield
    convlstm.set_fusion(previous)


@pytest.mark.parametrize(
    "options",
    [
        dict(),  # hand-written derivatives (FusedGates)
        dict(recurrent_activation="hard_sigmoid", stride=2),  # FusedGates, unfused conv path
        # compiled autograd kernel (a compile each, 20 s with a cold cache: the second
        # case's peepholes are in the third)
        pytest.param(dict(peephole="channel"), marks=pytest.mark.slow),
        dict(peephole="channel", recurrent_activation="hard_sigmoid", layer_norm=True),
    ],
)
def test_fused_gate_kernel_matches_eager(fusion_always, options):
    layer = perturb(ConvLSTM2d(2, 4, 3, **options))
    x = torch.randn(2, 4, 2, 6, 6, requires_grad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out, (h_n, c_n) = layer(x)
        out.square().sum().backward()
    fell_back = [str(w.message) for w in caught if "fast path" in str(w.message)]
    assert not fell_back, "the fused kernel fell back to eager"
    fused_grads = [x.grad.clone()] + [p.grad.clone() for p in layer.parameters()]

    convlstm.set_fusion("never")
    x.grad = None
    layer.zero_grad()
    ref, (ref_h, ref_c) = layer(x)
    ref.square().sum().backward()
    eager_grads = [x.grad] + [p.grad for p in layer.parameters()]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(c_n, ref_c, atol=1e-5, rtol=1e-4)
    for fused, eager in zip(fused_grads, eager_grads):
        torch.testing.assert_close(fused, eager, atol=1e-4, rtol=1e-3)


def test_torch_compile_of_whole_layer_matches_eager():
    layer = perturb(ConvLSTM2d(2, 3, 3, num_layers=2, padding=["valid", "same"]))
    x = torch.randn(2, 4, 2, 7, 7)
    ref, (ref_h, _) = layer(x)
    compiled = torch.compile(layer)
    out, (h_n, _) = compiled(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(h_n, ref_h, atol=1e-5, rtol=1e-4)


def test_bfloat16_autocast_close_to_float32():
    layer = perturb(ConvLSTM2d(2, 4, 3, num_layers=2), scale=0.1)
    x = torch.randn(2, 5, 2, 8, 8)
    ref, (_, ref_c) = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (_, c_n) = layer(x)
    assert out.dtype == torch.bfloat16
    assert c_n.dtype == torch.float32  # the cell state accumulates in float32
    assert (out.float() - ref).abs().max() < 0.05
    out.float().sum().backward()
    assert all(p.grad is not None for p in layer.parameters())


def test_channels_last_input_gives_same_result():
    layer = perturb(ConvLSTM2d(3, 4, 3))
    x = torch.randn(2, 3, 3, 6, 6)
    cl = torch.stack([f.contiguous(memory_format=torch.channels_last) for f in x.unbind(1)], 1)
    torch.testing.assert_close(layer(cl)[0], layer(x)[0])


def test_onnx_export_matches_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    layer = perturb(
        ConvLSTM2d(2, 3, 3, num_layers=2, padding=["valid", "same"], peephole="channel")
    )
    layer.eval()
    x = torch.randn(2, 4, 2, 7, 7)

    class Wrapper(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, inp):
            out, (h, c) = self.inner(inp)
            return out, h, c

    path = tmp_path / "convlstm.onnx"
    wrapper = Wrapper(layer).eval()
    torch.onnx.export(wrapper, (x,), str(path), input_names=["x"], output_names=["y", "h", "c"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y, h, c = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        ref, (ref_h, ref_c) = layer(x)
    torch.testing.assert_close(torch.from_numpy(y), ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.from_numpy(c), ref_c, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("lengths", [None, [5, 3]], ids=["segments", "per-step"])
def test_checkpointing_through_the_fused_kernel(fusion_always, lengths):
    # Without a mask the fused sequence recomputes segments; with one every step is
    # recomputed by torch.utils.checkpoint through the compiled gate kernel.
    plain = perturb(ConvLSTM2d(1, 4, 3))
    ckpt = ConvLSTM2d(1, 4, 3, checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 5, 1, 6, 6)
    grads = []
    for model in (plain, ckpt):
        out, _ = model(x, lengths=lengths)
        out.square().sum().backward()
        grads.append([p.grad for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_second_order_gradients_with_fusion_never():
    # The fused kernels have first-order derivatives only (like cuDNN's RNNs);
    # set_fusion("never") gives a layer built from differentiable ops throughout.
    previous = functional.get_fusion()
    convlstm.set_fusion("never")
    try:
        layer = perturb(ConvLSTM2d(1, 2, 3)).double()
        x = torch.randn(1, 3, 1, 4, 4, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradgradcheck(lambda inp: layer(inp)[0], (x,))
    finally:
        convlstm.set_fusion(previous)


@pytest.mark.parametrize(
    "recurrent_activation",
    ["sigmoid", pytest.param("hard_sigmoid", marks=pytest.mark.slow)],  # a compile each
)
def test_layer_norm_without_peepholes_is_not_skipped_when_fused(recurrent_activation):
    """The hand-written gate kernel has no norms: a layer-normed cell fused with
    set_fusion("always") must not take it (it did, silently dropping the norms)."""
    torch.manual_seed(0)
    layer = perturb(ConvLSTM2d(2, 16, 3, layer_norm=True,
                               recurrent_activation=recurrent_activation))  # fmt: skip
    x = torch.randn(2, 3, 2, 48, 48)  # 2 x 16 x 48 x 48 = 73,728 cell elements a step
    previous = functional.get_fusion()
    try:
        convlstm.set_fusion("always")
        out, (_, c_n) = layer(x)
        convlstm.set_fusion("never")
        ref, (_, ref_c) = layer(x)
    finally:
        convlstm.set_fusion(previous)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(c_n, ref_c, atol=1e-5, rtol=1e-4)
