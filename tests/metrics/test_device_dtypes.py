"""Metrics update on the model's device without float64, which MPS does not have (issue 18).

A CPU-only machine cannot run MPS, so the tests watch every tensor that ``update()``
makes (a dispatch mode sees each op's outputs) and fail on any float64 one: on MPS that
op would raise. Widening for exact sums belongs in ``compute()``, after a move to the CPU.
"""

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from convlstm.metrics import ClassificationMetrics, ForecastMetrics


class Float64Watch(TorchDispatchMode):
    """Names the ops that produce a float64 tensor while active."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outs = out if isinstance(out, (tuple, list)) else [out]
        if any(torch.is_tensor(t) and t.dtype == torch.float64 for t in outs):
            self.ops.append(str(func))
        return out


def test_the_watch_sees_a_float64_op():
    with Float64Watch() as watch:
        torch.ones(3).double().sum()
    assert watch.ops, "the dispatch mode must report float64 outputs"


def test_classification_update_makes_no_float64():
    metric = ClassificationMetrics(3, sync_on_compute=False)
    scores = torch.softmax(torch.randn(8, 3), dim=1)
    with Float64Watch() as watch:
        metric.update(scores, torch.arange(8) % 3)
    assert watch.ops == []


def test_forecast_update_makes_no_float64():
    metric = ForecastMetrics(data_range=1.0, thresholds=[0.5], fss_scales=[3],
                             sync_on_compute=False)  # fmt: skip
    pred, target = torch.rand(2, 3, 1, 16, 16), torch.rand(2, 3, 1, 16, 16)
    with Float64Watch() as watch:
        metric.update(pred, target, last_input=target[:, 0])
    assert watch.ops == []
