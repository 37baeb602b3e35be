"""Every loss against a value computed by hand (the formula written out with math)."""

import math

import pytest
import torch
import torch.nn.functional as F

from convlstm.losses import (
    BinaryCrossEntropy,
    CrossEntropy,
    FocalLoss,
    FrameBCELoss,
    MAELoss,
    MSEGDLLoss,
    MSELoss,
    MSEMAELoss,
    SSIMLoss,
    SupConLoss,
    TripletLoss,
    create_loss,
    gradient_difference,
    list_losses,
    ssim,
)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def close(value: torch.Tensor, expected: float) -> None:
    assert value.item() == pytest.approx(expected, rel=1e-5, abs=1e-7)


# ---------------------------------------------------------------- classification
def test_bce_unweighted_and_class_weighted():
    logits = torch.tensor([[0.0], [2.0]])  # the models' (B, 1) head
    target = torch.tensor([1.0, 0.0])
    # -log σ(0) = log 2 for the positive; -log(1 - σ(2)) = softplus(2) for the negative
    close(BinaryCrossEntropy()(logits, target), (math.log(2) + softplus(2)) / 2)
    weighted = BinaryCrossEntropy(class_weights=[1.0, 3.0])(logits, target)
    close(weighted, (3 * math.log(2) + 1 * softplus(2)) / (3 + 1))
    close(BinaryCrossEntropy([1.0, 3.0], reduction="sum")(logits, target),
          3 * math.log(2) + softplus(2))


def test_cross_entropy_class_weighted():
    logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    target = torch.tensor([0, 2])
    first = -math.log(math.e / (math.e + 2))
    second = -math.log(1 / (1 + math.exp(2) + 1))
    close(CrossEntropy()(logits, target), (first + second) / 2)
    close(CrossEntropy(class_weights=[1.0, 1.0, 4.0])(logits, target), (first + 4 * second) / 5)


def test_binary_focal_loss():
    logits = torch.tensor([0.0, math.log(3)])  # p = 0.5, 0.75
    target = torch.tensor([1.0, 0.0])  # p_t = 0.5, 0.25
    a = -(0.5**2) * math.log(0.5)
    b = -(0.75**2) * math.log(0.25)
    close(FocalLoss(gamma=2)(logits, target), (a + b) / 2)
    close(FocalLoss(gamma=2, alpha=0.25)(logits, target), (0.25 * a + 0.75 * b) / 2)


def test_multiclass_focal_loss():
    logits = torch.log(torch.tensor([[1.0, 3.0], [1.0, 1.0]]))  # softmax (0.25, 0.75), (0.5, 0.5)
    target = torch.tensor([0, 1])
    a = -(0.75**2) * math.log(0.25)
    b = -(0.5**2) * math.log(0.5)
    close(FocalLoss(gamma=2)(logits, target), (a + b) / 2)
    close(FocalLoss(gamma=2, alpha=[2.0, 1.0])(logits, target), (2 * a + b) / 2)


def test_focal_with_gamma_zero_is_cross_entropy():
    logits, target = torch.randn(6, 4), torch.randint(0, 4, (6,))
    torch.testing.assert_close(FocalLoss(gamma=0)(logits, target), F.cross_entropy(logits, target))


# ---------------------------------------------------------------- metric learning
def test_supervised_contrastive_by_hand():
    embeddings = torch.tensor([[3.0, 0.0], [0.0, 2.0], [1.0, 0.0]])  # normalised: e1, e2, e1
    labels = torch.tensor([0, 0, 1])
    # anchor 0: positive 1 (cos 0), others 1 (cos 0) and 2 (cos 1); anchor 1: cos 0 to both;
    # anchor 2 has no positive and is left out
    for tau in (1.0, 0.5):
        loss0 = -math.log(1 / (1 + math.exp(1 / tau)))
        loss1 = -math.log(1 / 2)
        close(SupConLoss(temperature=tau)(embeddings, labels), (loss0 + loss1) / 2)


def test_triplet_batch_hard_by_hand():
    embeddings = torch.tensor([[0.0], [2.0], [2.5], [4.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # hardest positive / negative distances per anchor: (2, 2.5), (2, 0.5), (1.5, 0.5), (1.5, 2)
    gaps = [2 - 2.5, 2 - 0.5, 1.5 - 0.5, 1.5 - 2]
    close(TripletLoss(margin=1.0)(embeddings, labels), sum(max(0, g + 1) for g in gaps) / 4)
    close(TripletLoss(soft_margin=True)(embeddings, labels), sum(softplus(g) for g in gaps) / 4)


def test_metric_losses_have_finite_gradients_with_duplicates():
    embeddings = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    for loss in (TripletLoss(), TripletLoss(normalize=True), SupConLoss()):
        (grad,) = torch.autograd.grad(loss(embeddings, labels), embeddings)
        assert torch.isfinite(grad).all()


def test_metric_losses_without_pairs_are_zero():
    embeddings = torch.randn(3, 4, requires_grad=True)
    for loss in (TripletLoss(), SupConLoss()):
        value = loss(embeddings, torch.tensor([0, 1, 2]))
        assert value.item() == 0.0 and value.requires_grad


# ---------------------------------------------------------------- forecasting
def test_mse_mae_and_their_sum():
    prediction = torch.tensor([[0.0, 1.0], [2.0, 3.0]]).view(1, 1, 1, 2, 2)
    target = torch.zeros_like(prediction)
    close(MSELoss()(prediction, target), (0 + 1 + 4 + 9) / 4)
    close(MAELoss()(prediction, target), (0 + 1 + 2 + 3) / 4)
    close(MSEMAELoss()(prediction, target), 3.5 + 1.5)
    close(MSEMAELoss(mse_weight=1.0, mae_weight=2.0)(prediction, target), 3.5 + 2 * 1.5)


def test_gradient_difference_by_hand():
    # prediction rows [0, 1, 3], [0, 0, 0]; target rows [0, 2, 2], [1, 1, 1]
    prediction = torch.tensor([[0.0, 1.0, 3.0], [0.0, 0.0, 0.0]]).view(1, 1, 1, 2, 3)
    target = torch.tensor([[0.0, 2.0, 2.0], [1.0, 1.0, 1.0]]).view(1, 1, 1, 2, 3)
    # down the rows: |d target| = 1, 1, 1 and |d prediction| = 0, 1, 3 -> (1 + 0 + 4) / 3;
    # along them: |d target| = 2, 0, 0, 0 and |d prediction| = 1, 2, 0, 0 -> (1 + 4) / 4
    close(gradient_difference(prediction, target), 5 / 3 + 5 / 4)
    close(gradient_difference(prediction, target, alpha=1.0), 3 / 3 + 3 / 4)
    close(gradient_difference(prediction, target, spatial_dims=1), 5 / 4)
    mse = ((prediction - target) ** 2).mean().item()
    close(MSEGDLLoss()(prediction, target), mse + 5 / 3 + 5 / 4)
    close(MSEGDLLoss(mse_weight=0.5, gdl_weight=2.0)(prediction, target),
          0.5 * mse + 2 * (5 / 3 + 5 / 4))


def test_gradient_difference_charges_an_edge_blurred_in_place():
    """What the term adds to MSE: the true edge costs nothing, the same edge blurred in
    place costs more than its squared error alone, and the term's gradient sharpens it.
    (It does not prefer a sharp edge in the wrong place: that misses the truth's edge
    and makes one where the truth has none.)"""
    edge = torch.zeros(1, 1, 1, 16, 16)
    edge[..., 8:] = 1.0  # a vertical edge
    padded = F.pad(edge.view(1, 1, 16, 16), (1, 1, 0, 0), mode="replicate")
    blurred = F.conv2d(padded, torch.tensor([[[[0.25, 0.5, 0.25]]]])).view_as(edge)
    assert gradient_difference(edge, edge).item() == 0.0
    assert 0 < gradient_difference(blurred, edge) < 1
    close(MSEGDLLoss(gdl_weight=0.0)(blurred, edge), F.mse_loss(blurred, edge).item())
    assert MSEGDLLoss()(blurred, edge) > F.mse_loss(blurred, edge) * 1.5
    blurred.requires_grad_(True)
    gradient_difference(blurred, edge).backward()
    step = blurred.detach() - 0.1 * blurred.grad
    assert gradient_difference(step, edge) < gradient_difference(blurred.detach(), edge)
    jump = step[..., 8] - step[..., 7]
    assert (jump > (blurred.detach()[..., 8] - blurred.detach()[..., 7])).all()


def test_mse_gdl_as_a_training_config_names_it():
    from convlstm.training.objectives import build_objective

    objective = build_objective("forecasting", {"name": "mse+gdl", "gdl_weight": 0.5})
    assert isinstance(objective.loss, MSEGDLLoss) and objective.loss.gdl_weight == 0.5
    prediction = torch.rand(2, 3, 1, 8, 8, requires_grad=True)
    objective.loss(prediction, torch.rand(2, 3, 1, 8, 8)).backward()
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0


def test_frame_bce_by_hand_and_bad_targets():
    prediction = torch.tensor([0.9, 0.2, 0.5, 0.0]).view(1, 1, 1, 2, 2)
    target = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, 1, 2, 2)
    eps = 1e-6
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.5) + math.log(1 - eps)) / 4
    close(FrameBCELoss()(prediction, target), expected)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = FrameBCELoss()(prediction.bfloat16(), target)
    assert value.dtype == torch.float32 and value.item() == pytest.approx(expected, rel=1e-2)
    with pytest.raises(ValueError, match=r"targets in \[0, 1\], got values in \[0, 2\]"):
        FrameBCELoss()(prediction, target * 2)
    assert isinstance(create_loss("frame_bce"), FrameBCELoss)


def test_ssim_of_constant_frames_by_hand():
    # constant frames: μx = a, μy = b, all variances 0 -> (2ab + C1) / (a² + b² + C1)
    a, b, c1 = 0.2, 0.6, 0.01**2
    shape = (2, 3, 1, 16, 16)  # float64: E[x²] - μ² in float32 is off by ~1e-8, and C2 ~ 1e-3
    x = torch.full(shape, a, dtype=torch.float64)
    y = torch.full(shape, b, dtype=torch.float64)
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    close(ssim(x, y), expected)
    close(SSIMLoss()(x, y), 1 - expected)
    # data_range scales C1: values in [0, 255]
    c1 = (0.01 * 255) ** 2
    close(ssim(x * 255, y * 255, data_range=255.0),
          (2 * a * b * 255**2 + c1) / ((a * a + b * b) * 255**2 + c1))


def test_ssim_identity_symmetry_and_small_frames():
    x, y = torch.rand(2, 2, 12, 12), torch.rand(2, 2, 12, 12)
    close(ssim(x, x), 1.0)
    close(ssim(x, y), ssim(y, x).item())
    assert ssim(x, y) < 0.5
    small = torch.rand(1, 1, 5, 6)
    close(ssim(small, small), 1.0)  # window shrunk to 5


def test_ssim_matches_torchmetrics_on_the_valid_region():
    # torchmetrics reflect-pads and averages the whole map; scikit-image and we average
    # only the positions whose window lies inside the frame (5 from each border here)
    metrics = pytest.importorskip("torchmetrics.functional.image")
    x, y = torch.rand(3, 2, 24, 20, dtype=torch.float64), torch.rand(3, 2, 24, 20)
    y = 0.7 * x + 0.3 * y.double()
    _, full = metrics.structural_similarity_index_measure(
        x, y, data_range=1.0, return_full_image=True
    )
    torch.testing.assert_close(ssim(x, y), full[..., 5:-5, 5:-5].mean())


# ---------------------------------------------------------------- registry and errors
def test_create_loss_by_name():
    assert set(list_losses()) == {
        "bce", "cross_entropy", "focal", "supcon", "triplet", "mse", "mae", "mse+mae", "ssim",
        "frame_bce", "mse+gdl",
    }
    assert isinstance(create_loss("focal", gamma=1.0), FocalLoss)
    with pytest.raises(KeyError, match="unknown loss 'l3'; known: bce, cross_entropy, focal"):
        create_loss("l3")


def test_the_losses_are_a_registry_like_the_models_and_data_sets():
    from convlstm.losses import LOSSES, get_loss_class, register_loss
    from convlstm.registry import Registry

    assert isinstance(LOSSES, Registry) and get_loss_class("mse+mae") is MSEMAELoss
    with pytest.raises(TypeError, match=r"loss 'focal' got unknown config keys \['gama'\]; "
                       r"accepted: \['gamma', 'alpha', 'reduction'\]"):  # fmt: skip
        create_loss("focal", gama=2.0)

    @register_loss("test-l1")
    class L1(torch.nn.Module):
        def forward(self, output, target):
            return (output - target).abs().mean()

    try:
        assert "test-l1" in list_losses() and isinstance(create_loss("test-l1"), L1)
        with pytest.raises(ValueError, match="already registered"):
            register_loss("mse")(L1)
    finally:
        LOSSES._builders.pop("test-l1")


def test_every_loss_a_bundled_config_names_is_built():
    """The configs that work today keep working: each bundled config's loss section,
    built as the training builds it."""
    from pathlib import Path

    import yaml

    from convlstm.training.objectives import build_objective

    configs = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))
    assert len(configs) >= 5
    for path in configs:
        config = yaml.safe_load(path.read_text())
        num_classes = config["model"].get("num_classes", 1)
        weights = torch.ones(max(num_classes, 2)) if config["data"].get("class_weights") else None
        objective = build_objective(
            config["task"], config.get("loss", {}), num_classes=num_classes, class_weights=weights
        )
        assert isinstance(objective.loss, torch.nn.Module), path
    for options in ({"name": "focal", "gamma": 1.0, "alpha": 0.5},
                    {"name": "ssim", "window_size": 7}, {"name": "mse+mae", "mae_weight": 0.5},
                    {"name": "cross_entropy", "metric": "supcon",
                     "metric_options": {"temperature": 0.2}}):  # fmt: skip
        task = "classification" if options["name"] in ("focal", "cross_entropy") else "forecasting"
        assert build_objective(task, options, num_classes=3) is not None


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: BinaryCrossEntropy(class_weights=[1.0]), "class_weights must be a list of 2"),
        (lambda: BinaryCrossEntropy(reduction="max"), "reduction must be one of"),
        (lambda: FocalLoss(gamma=-1), "gamma must be >= 0"),
        (lambda: FocalLoss(alpha=1.5), "alpha as a float must be in"),
        (lambda: SupConLoss(temperature=0), "temperature must be > 0"),
        (lambda: TripletLoss(margin=-1), "margin must be >= 0"),
        (lambda: SSIMLoss(data_range=0), "data_range and sigma must be > 0"),
        (lambda: MSEGDLLoss(gdl_weight=-1), "weights must be >= 0 and alpha > 0"),
        (lambda: MSEGDLLoss(spatial_dims=4), "spatial_dims must be 1, 2 or 3"),
    ],
)
def test_bad_arguments_name_the_argument(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_bad_shapes_are_reported():
    with pytest.raises(ValueError, match=r"binary logits must be \(B,\) or \(B, 1\)"):
        BinaryCrossEntropy()(torch.zeros(4, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="class_weights has 2 entries but logits have 3"):
        CrossEntropy(class_weights=[1.0, 2.0])(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="same shape"):
        MSELoss()(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"embeddings \(B, D\) and labels \(B,\)"):
        TripletLoss()(torch.zeros(4, 2), torch.zeros(3))
