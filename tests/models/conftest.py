import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    """Seeded (tests/conftest.py already makes every test single-threaded)."""
    torch.manual_seed(0)


@pytest.fixture
def no_fusion():
    """Eager gate arithmetic (no torch.compile) for tests on large frames."""
    from convlstm.nn.functional import get_fusion, set_fusion

    mode = get_fusion()
    set_fusion("never")
    yield
    set_fusion(mode)


def overfit(model, inputs, targets, loss_fn, steps: int, lr: float = 0.02) -> float:
    """Train on one fixed batch with Adam; return the final loss."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(model(inputs), targets)
        loss.backward()
        optimizer.step()
    return loss.item()


def first_step_grad(model, x, output_fn=lambda out: out) -> torch.Tensor:
    """Gradient of the summed output with respect to the first input step."""
    x = x.clone().requires_grad_(True)
    output_fn(model(x)).float().pow(2).sum().backward()
    return x.grad[:, 0]
