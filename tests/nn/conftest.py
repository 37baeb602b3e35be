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
