"""The backend settings (``convlstm.nn.backend``), the fast paths' fallback for one call,
and the layering: reference code imports no speed code, private PyTorch APIs live in
one module."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import convlstm
from convlstm.nn import Backend, ConvLSTM2d, backend, get_fusion, set_fusion
from convlstm.nn.fast import pointwise, sequence, simd

NN = Path(convlstm.nn.__file__).parent
# 2 x 16 channels x 48 x 48 = 73,728 state elements per step: the fast path's size.
BATCH, CHANNELS, SIZE, STEPS = 2, 16, 48, 3


def _clip(**options) -> torch.Tensor:
    return torch.randn(BATCH, STEPS, 1, SIZE, SIZE, **options)


def test_the_environment_is_read_in_one_place():
    assert Backend.from_environment({}) == Backend()
    read = Backend.from_environment({"CONVLSTM_FUSION": "NEVER", "CONVLSTM_SIMD_GATES": "0"})
    assert (read.fusion, read.simd) == ("never", False)
    # glibc told to keep every freed block: fresh gate tensors cost no page faults
    assert Backend().fresh_gate_bytes == 32 << 20
    assert Backend.from_environment({"MALLOC_MMAP_MAX_": "0"}).fresh_gate_bytes == sys.maxsize
    with pytest.raises(ValueError, match="CONVLSTM_FUSION must be one of"):
        Backend.from_environment({"CONVLSTM_FUSION": "sometimes"})


def test_the_process_backend_follows_the_environment_and_imports_no_compiler():
    code = (
        "import sys, convlstm, convlstm.nn.fast\n"
        "from convlstm.nn import backend\n"
        "assert (backend.fusion, backend.simd) == ('never', False), backend\n"
        "loaded = [m for m in sys.modules if m.startswith(('torch._dynamo', 'torch._inductor'))]\n"
        "assert not loaded, loaded[:5]\n"
        "print('ok')\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CONVLSTM_FUSION": "never",
           "CONVLSTM_SIMD_GATES": "0"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_settings_are_checked_and_restored():
    with pytest.raises(ValueError, match="fusion mode must be one of"):
        backend.fusion = "sometimes"
    with pytest.raises(AttributeError, match="Backend has no setting 'fused'"):
        backend.fused = True
    before = (backend.fusion, backend.min_fast_elements)
    with pytest.raises(KeyError), backend.override(fusion="never", min_fast_elements=1):
        assert get_fusion() == "never" and backend.min_fast_elements == 1
        raise KeyError("restored anyway")
    assert (backend.fusion, backend.min_fast_elements) == before
    previous = get_fusion()
    set_fusion("always")
    assert backend.fusion == "always"
    set_fusion(previous)


def test_the_threshold_is_a_setting(fused_cells):
    layer = ConvLSTM2d(1, 16, 3)  # 16 channels: the hand-written loops, no compile
    small = torch.randn(2, 3, 1, 8, 8)
    with torch.no_grad():
        layer(small)
        assert fused_cells == []  # 2,048 state elements: below the threshold
        with backend.override(min_fast_elements=2048):
            layer(small)
    assert fused_cells == [id(layer.cell(0))]


def _fails_once(real, message: str):
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError(message)
        return real(*args, **kwargs)

    return flaky


def test_a_failing_fast_path_falls_back_for_that_call_only(fused_cells, monkeypatch):
    layer = ConvLSTM2d(1, CHANNELS, 3)
    x = _clip(requires_grad=True)
    with backend.override(fusion="never"):
        expected, (_, c_expected) = layer(x)
    monkeypatch.setattr(sequence, "_forward", _fails_once(sequence._forward, "no memory"))
    with pytest.warns(RuntimeWarning, match=r"fast path FusedSequence failed \(RuntimeError: "
                      r"no memory\); this call ran the reference step"):  # fmt: skip
        out, (_, c_n) = layer(x)
    assert fused_cells == []
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(c_n, c_expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again, _ = layer(x)  # the next call takes the fast path again, silently
    assert fused_cells == [id(layer.cell(0))]
    assert "FusedSequence" in type(again.grad_fn).__name__
    torch.testing.assert_close(again, expected, rtol=1e-5, atol=1e-5)


def test_a_failing_gate_step_falls_back_for_that_call_only(monkeypatch):
    """With ``lengths`` the layer steps the cell; its fused gate step fails once."""
    layer = ConvLSTM2d(1, CHANNELS, 3)
    x = _clip()
    with torch.no_grad(), backend.override(fusion="never"):
        expected, _ = layer(x, lengths=[STEPS, 2])
    monkeypatch.setattr(pointwise, "fused_gates", _fails_once(pointwise.fused_gates, "bad"))
    with torch.no_grad(), pytest.warns(RuntimeWarning, match=r"fast path FusedGates failed"):
        out, _ = layer(x, lengths=[STEPS, 2])
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def _imports(path: Path) -> set[str]:
    """The modules ``path`` imports at run time (not under ``if TYPE_CHECKING``), as
    written (``.fast``, ``..cell``, ``torch``)."""
    tree = ast.parse(path.read_text())
    checked = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in checked:
            continue
        if isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            found |= {base} if node.module else {f"{base}{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def test_the_reference_imports_no_speed_code_and_the_speed_code_no_layer():
    reference = ["functional.py", "activations.py", "_utils.py", "settings.py", "recurrent.py",
                 "gru.py"]  # fmt: skip
    for name in reference:
        speed = {m for m in _imports(NN / name) if "fast" in m}
        assert not speed, f"{name} imports speed code: {speed}"
    for path in (NN / "fast").glob("*.py"):
        upward = {m for m in _imports(path) if m.split(".")[-1] in ("cell", "layer", "gru")}
        assert not upward, f"fast/{path.name} imports {upward}"


def test_private_torch_apis_are_called_from_one_module():
    private = ("torch._inductor", "torch._dynamo", "torch.ops.mkldnn", "_is_avx512", "_is_avx2")
    for path in NN.rglob("*.py"):
        if path.name != "_torch.py":
            text = path.read_text()
            assert not [p for p in private if p in text], path


def test_the_loops_argument_types_come_from_the_cpp():
    types = simd._argtypes(simd._SOURCE.read_text())
    assert list(types) == ["forward", "backward", "transpose", "weight_grad"]
    assert [len(t) for t in types.values()] == [13, 19, 8, 17]
    pointers = ["const void*", "const float*", "const float*", "void*", "float*"]
    assert types["forward"][:5] == pointers
    assert set(types["weight_grad"][3:]) == {"int64_t"}
