"""``import convlstm`` stays light: the compiler stack loads at the fast path's first use.

Importing ``torch._dynamo`` or ``torch._inductor`` creates TorchInductor's cache
directory; where it cannot be created (a read-only home, a cache path under a file),
importing the package used to fail even for users who never compile anything.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

COMPILER_MODULES = "('torch._dynamo', 'torch._inductor')"


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_import_loads_no_compiler_module():
    code = (
        "import convlstm, sys\n"
        f"loaded = [m for m in sys.modules if m.startswith({COMPILER_MODULES})]\n"
        "assert not loaded, loaded[:5]\n"
        "print('ok')\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_forward_without_fusion_needs_no_inductor_cache(tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("a regular file: no directory can be created under it")
    # 2 x 16 channels x 48 x 48 = 73,728 cell elements: the fast path's size.
    code = (
        "import sys, torch, convlstm\n"
        "convlstm.set_fusion('never')\n"
        "torch.manual_seed(0)\n"
        "layer = convlstm.ConvLSTM2d(1, 16, 3)\n"
        "x = torch.randn(2, 4, 1, 48, 48, requires_grad=True)\n"
        "out, (h, c) = layer(x)\n"
        "out.sum().backward()\n"
        "assert out.shape == (2, 4, 16, 48, 48), out.shape\n"
        "assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0\n"
        f"loaded = [m for m in sys.modules if m.startswith({COMPILER_MODULES})]\n"
        "assert not loaded, loaded[:5]\n"
        "print('ok')\n"
    )
    result = _run(code, TORCHINDUCTOR_CACHE_DIR=str(blocker / "cache"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
