"""Metrics computed over no samples (an empty evaluation split) say so, instead of
blaming the caller for skipping update()."""

import pytest
import torch

from convlstm.metrics import ClassificationMetrics, ForecastMetrics


@pytest.mark.parametrize(
    "metric", [ForecastMetrics(), ClassificationMetrics(3)], ids=lambda m: type(m).__name__
)
def test_compute_over_no_samples_names_the_likely_cause(metric):
    with pytest.raises(ValueError) as info, pytest.warns(UserWarning):  # torchmetrics' own
        metric.compute()
    message = str(info.value)
    assert message.startswith(f"{type(metric).__name__}.compute(): no samples were evaluated")
    assert "empty" in message and "\n" not in message


def test_compute_after_reset_is_empty_again():
    metric = ForecastMetrics()
    metric.update(torch.zeros(1, 2, 1, 4, 4), torch.ones(1, 2, 1, 4, 4))
    assert metric.compute()["num_sequences"] == 1
    metric.reset()
    with pytest.raises(ValueError, match="no samples were evaluated"), pytest.warns(UserWarning):
        metric.compute()
