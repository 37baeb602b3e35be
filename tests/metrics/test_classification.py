"""ClassificationMetrics against numbers worked out by hand."""

import math

import numpy as np
import pytest
import torch

from convlstm.metrics import ClassificationMetrics

# Negatives at 0.1, 0.3, 0.65; positives at 0.45, 0.7, 0.8, 0.9 (see test_youden_threshold).
SCORES = torch.tensor([0.1, 0.3, 0.65, 0.45, 0.7, 0.8, 0.9])
LABELS = torch.tensor([0, 0, 0, 1, 1, 1, 1])


def mann_whitney_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting one half."""
    pos, neg = scores[positive], scores[~positive]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def test_binary_perfect_predictions():
    m = ClassificationMetrics(2)
    m.update(torch.tensor([0.9, 0.2, 0.8, 0.1]), torch.tensor([1, 0, 1, 0]))
    r = m.compute()
    for key in ("accuracy", "balanced_accuracy", "roc_auc", "f1", "accuracy_at_best_threshold"):
        assert r[key] == pytest.approx(1.0), key
    assert r["confusion_matrix"] == [[2, 0], [0, 2]]
    assert r["youden_j"] == pytest.approx(1.0)
    assert r["best_threshold"] == pytest.approx(0.8)  # the lowest positive score


def test_multiclass_perfect_predictions():
    probs = torch.eye(3)[[0, 1, 2, 2, 1]] * 0.8 + 0.2 / 3
    m = ClassificationMetrics(3)
    m.update(probs, torch.tensor([0, 1, 2, 2, 1]))
    r = m.compute()
    for key in ("accuracy", "balanced_accuracy", "roc_auc", "f1"):
        assert r[key] == pytest.approx(1.0), key
    assert r["confusion_matrix"] == [[1, 0, 0], [0, 2, 0], [0, 0, 2]]
    assert "best_threshold" not in r and "roc_fpr" not in r


def test_binary_known_values():
    m = ClassificationMetrics(2)
    m.update(SCORES, LABELS)
    r = m.compute()
    # At p > 0.5: the negative 0.65 becomes a false positive, the positive 0.45 a false negative.
    assert r["confusion_matrix"] == [[2, 1], [1, 3]]
    assert r["accuracy"] == pytest.approx(5 / 7)
    assert r["balanced_accuracy"] == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert r["f1"] == pytest.approx(0.75)  # precision 3/4, recall 3/4
    assert r["roc_auc"] == pytest.approx(11 / 12)  # 0.45 beats two of three negatives
    assert r["roc_auc"] == pytest.approx(mann_whitney_auc(SCORES.numpy(), LABELS.numpy() == 1))
    assert r["num_samples"] == 7


def test_youden_threshold():
    r = ClassificationMetrics(2)
    r.update(SCORES, LABELS)
    r = r.compute()
    # Thresholds 0.9, 0.8, 0.7, 0.65, 0.45, 0.3, 0.1 give J = TPR - FPR of
    # 1/4, 2/4, 3/4, 3/4 - 1/3, 1 - 1/3, 1 - 2/3, 0: the best is 0.7 with J = 0.75.
    assert r["best_threshold"] == pytest.approx(0.7)
    assert r["youden_j"] == pytest.approx(0.75)
    assert r["accuracy_at_best_threshold"] == pytest.approx(6 / 7)  # only 0.45 is wrong
    np.testing.assert_allclose(r["roc_fpr"], [0, 0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1], atol=1e-6)
    np.testing.assert_allclose(r["roc_tpr"], [0, 0.25, 0.5, 0.75, 0.75, 1, 1, 1], atol=1e-6)
    assert len(r["roc_thresholds"]) == len(r["roc_fpr"])


def test_multiclass_known_confusion_matrix():
    target = torch.tensor([0, 0, 0, 1, 1, 2])
    predicted = torch.tensor([0, 0, 1, 1, 2, 2])
    probs = torch.full((6, 3), 0.1)
    probs[torch.arange(6), predicted] = 0.8
    m = ClassificationMetrics(3)
    m.update(probs, target)
    r = m.compute()
    assert r["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # Per-class F1: 2*1*(2/3)/(1+2/3) = 0.8, 0.5, 2*(1/2)*1/(3/2) = 2/3.
    assert r["f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    aucs = [mann_whitney_auc(probs[:, k].numpy(), target.numpy() == k) for k in range(3)]
    assert r["roc_auc"] == pytest.approx(np.mean(aucs), abs=1e-6)


def test_accumulation_equals_single_update():
    g = torch.Generator().manual_seed(1)
    probs = torch.softmax(torch.randn(40, 4, generator=g), dim=1)
    target = torch.randint(0, 4, (40,), generator=g)
    whole, parts = ClassificationMetrics(4), ClassificationMetrics(4)
    whole.update(probs, target)
    for chunk in (slice(0, 7), slice(7, 8), slice(8, 30), slice(30, 40)):
        parts.update(probs[chunk], target[chunk])
    assert parts.compute() == whole.compute()

    scores = probs[:, 0]
    labels = (target == 0).long()
    whole, parts = ClassificationMetrics(2), ClassificationMetrics(2)
    whole.update(scores, labels)
    for s, t in zip(scores.split(9), labels.split(9)):
        parts.update(s, t)
    assert parts.compute() == whole.compute()


def test_reset_forgets_samples():
    m = ClassificationMetrics(2)
    m.update(torch.tensor([0.9, 0.1]), torch.tensor([0, 1]))
    m.reset()
    m.update(torch.tensor([0.9, 0.1]), torch.tensor([1, 0]))
    assert m.compute()["accuracy"] == 1.0


def test_binary_accepts_column_shapes_and_bool_targets():
    m = ClassificationMetrics(2)
    m.update(torch.tensor([[0.9], [0.2]]), torch.tensor([True, False]))
    m.update(torch.tensor([[0.3, 0.7], [0.6, 0.4]]), torch.tensor([1.0, 0.0]))
    assert m.compute()["confusion_matrix"] == [[2, 0], [0, 2]]


def test_single_class_targets_give_nan_auc():
    m = ClassificationMetrics(2)
    m.update(torch.tensor([0.9, 0.7]), torch.tensor([1, 1]))
    with pytest.warns(UserWarning):
        r = m.compute()
    assert math.isnan(r["roc_auc"])
    assert r["accuracy"] == 1.0


@pytest.mark.parametrize(
    ("k", "scores", "target", "match"),
    [
        (2, torch.rand(4, 3), torch.zeros(4, dtype=torch.long), r"\(N,\) = \(4,\).*\(4, 3\)"),
        (3, torch.rand(4), torch.zeros(4, dtype=torch.long), r"\(4, 3\).*got \(4,\)"),
        (3, torch.rand(4, 3), torch.zeros(4, 1, dtype=torch.long), r"target.*\(N,\)"),
        (2, torch.tensor([0.5, 1.5]), torch.tensor([0, 1]), "probabilities in \\[0, 1\\]"),
        (3, torch.full((2, 3), 0.3), torch.tensor([0, 3]), r"class indices in \[0, 3\)"),
    ],
)
def test_bad_inputs_are_named(k, scores, target, match):
    with pytest.raises(ValueError, match=match):
        ClassificationMetrics(k).update(scores, target)


def test_bad_construction_and_empty_compute():
    with pytest.raises(ValueError, match="num_classes"):
        ClassificationMetrics(1)
    with pytest.raises(ValueError, match="no samples were evaluated"), pytest.warns(UserWarning):
        ClassificationMetrics(2).compute()


# ---------------------------------------------------------------- summary from arrays


def test_binary_summary_known_values():
    from convlstm.metrics.classification import binary_summary

    s = binary_summary(SCORES.numpy(), LABELS.numpy())
    assert s.roc_auc == pytest.approx(11 / 12, abs=1e-15)
    # Accuracy at p >= t for t = 0.9, 0.8, 0.7, 0.65, 0.45, ...: 4/7, 5/7, 6/7, 5/7, 6/7:
    # the first (highest) threshold reaching 6/7 is 0.7.
    assert s.peak_accuracy == pytest.approx(6 / 7, abs=1e-15)
    assert s.peak_accuracy_threshold == pytest.approx(0.7)
    assert s.youden_j == pytest.approx(0.75, abs=1e-15)
    assert (s.youden_tpr, s.youden_fpr) == (pytest.approx(0.75), 0.0)
    assert s.youden_threshold == pytest.approx(0.7)
    assert s.num_samples == 7 and s.num_positive == 4
    assert set(s.to_dict()) >= {"roc_auc", "peak_accuracy", "youden_tpr", "youden_fpr",
                                "youden_threshold"}  # fmt: skip


def test_binary_summary_is_float64():
    """Scores 1e-9 apart are distinct in float64 (AUC 1) but equal in float32 (AUC 0.5)."""
    from convlstm.metrics.classification import binary_summary

    scores = np.array([0.5, 0.5 + 1e-9, 0.25, 0.75 + 1e-9])
    labels = np.array([0, 1, 0, 1])
    s = binary_summary(scores, labels)
    assert s.roc_auc == 1.0
    assert s.peak_accuracy == 1.0 and s.youden_j == 1.0
    assert s.youden_threshold == 0.5 + 1e-9
    assert binary_summary(torch.from_numpy(scores), torch.from_numpy(labels)).roc_auc == 1.0
    assert binary_summary(scores.astype(np.float32), labels).roc_auc == 0.875  # a tie
    # ClassificationMetrics keeps its scores in float64 too.
    metrics = ClassificationMetrics(2)
    metrics.update(torch.from_numpy(scores), torch.from_numpy(labels))
    result = metrics.compute()
    assert result["peak_accuracy"] == 1.0 and result["youden_j"] == 1.0


def test_binary_summary_against_sklearn():
    from sklearn.metrics import accuracy_score, roc_auc_score, roc_curve

    from convlstm.metrics.classification import binary_summary

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 500)
    scores = np.clip(rng.normal(0.4 + 0.2 * labels, 0.2), 0, 1).round(2)  # with ties
    s = binary_summary(scores, labels)
    assert s.roc_auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    fpr, tpr, thresholds = roc_curve(labels, scores)
    best = int(np.argmax(tpr - fpr))
    assert s.youden_j == pytest.approx(tpr[best] - fpr[best], abs=1e-12)
    assert s.youden_threshold == thresholds[best]
    assert (s.youden_tpr, s.youden_fpr) == (tpr[best], fpr[best])
    peak = max(accuracy_score(labels, scores >= t) for t in np.unique(scores))
    assert s.peak_accuracy == pytest.approx(max(peak, 1 - labels.mean()), abs=1e-12)


@pytest.mark.parametrize(
    ("scores", "labels", "match"),
    [
        ([0.2, 0.7], [0, 1, 1], r"probabilities \(2,\) and labels \(3,\)"),
        ([0.2, 1.7], [0, 1], r"probabilities must lie in \[0, 1\].*1\.7"),
        ([0.2, np.nan], [0, 1], r"probabilities must lie in \[0, 1\]"),
        ([0.2, 0.7], [0, 2], r"labels must be 0 or 1.*2"),
        ([], [], "no samples"),
    ],
)
def test_binary_summary_bad_input(scores, labels, match):
    from convlstm.metrics.classification import binary_summary

    with pytest.raises(ValueError, match=match):
        binary_summary(np.asarray(scores, dtype=float), np.asarray(labels))


def test_binary_summary_one_class_has_no_auc():
    from convlstm.metrics.classification import binary_summary

    s = binary_summary(np.array([0.2, 0.9]), np.array([1, 1]))
    assert math.isnan(s.roc_auc) and math.isnan(s.youden_j)
    assert s.peak_accuracy == 1.0


def test_classification_metrics_report_the_summary():
    m = ClassificationMetrics(2)
    m.update(SCORES, LABELS)
    r = m.compute()
    assert r["peak_accuracy"] == pytest.approx(6 / 7)
    assert (r["youden_tpr"], r["youden_fpr"]) == (pytest.approx(0.75), 0.0)
    assert r["best_threshold"] == pytest.approx(0.7)


def test_states_stay_in_the_scores_dtype_and_compute_widens_on_the_cpu():
    """No float64 on the scores' device (MPS has none); the result is still float64-exact."""
    import torch

    from convlstm.metrics import ClassificationMetrics

    scores = torch.rand(64, generator=torch.Generator().manual_seed(0))
    target = (torch.rand(64, generator=torch.Generator().manual_seed(1)) > 0.5).long()
    metric = ClassificationMetrics(2, sync_on_compute=False)
    metric.update(scores, target)
    assert metric.scores[0].dtype == torch.float32
    wide = ClassificationMetrics(2, sync_on_compute=False)
    wide.update(scores.double(), target)
    assert metric.compute()["roc_auc"] == wide.compute()["roc_auc"]
