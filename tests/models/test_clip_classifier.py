import pytest
import torch
import torch.nn.functional as F

from convlstm.models import ClipClassifier, create_model
from convlstm.nn.attention import SpatialAttention

from .conftest import first_step_grad, overfit

OPTIONS = [
    {},
    {"padding": "valid"},
    {"pool_size": 1, "batch_norm": False},
    {"batch_norm_affine": False, "final_batch_norm": True},
    {"residual": True, "hidden_channels": [4, 4, 4]},
    {"multiscale": True},
    {"attention": "sam", "attention_options": {"key_stride": 2}},
    {"attention": "spatial"},
    {"attention": "spatial", "spatial_attention": "sigmoid"},
    {"attention": "temporal"},
    {"attention": "temporal", "temporal_query": "learned", "multiscale": True},
    {"attention": ["sam", "spatial", "temporal"], "residual": True, "multiscale": True,
     "hidden_channels": [4, 4]},
    {"global_pool": "avg", "dropout": 0.3, "head_hidden": 8},
    {"num_classes": 3},
    {"layer_norm": True, "peephole": "channel", "recurrent_activation": "hard_sigmoid"},
    {"peephole": "pixel", "spatial_size": [8, 8], "padding": "valid", "checkpoint": True,
     "recurrent_dropout": 0.2},
]


def _config(**options):
    return {"in_channels": 2, "hidden_channels": [4, 6], **options}


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "default")
def test_shapes_for_every_option(options):
    model = ClipClassifier(**_config(**options))
    x = torch.randn(3, 4, 2, 8, 8)
    out = model(x)
    assert out.shape == (3, options.get("num_classes", 1))
    out2, maps = model.eval()(x, return_attention=True)
    assert out2.shape == out.shape
    widths = options.get("hidden_channels", [4, 6])
    assert model.embed(x).shape == (3, sum(widths) if options.get("multiscale") else widths[-1])
    kinds = options.get("attention") or []
    kinds = [kinds] if isinstance(kinds, str) else kinds
    expected_keys = set()
    for l in range(len(widths)):
        if "spatial" in kinds:
            expected_keys.add(f"layer{l}.spatial")
        if "sam" in kinds:
            expected_keys |= {f"layer{l}.hidden", f"layer{l}.memory"}
        if "temporal" in kinds and (options.get("multiscale") or l == len(widths) - 1):
            expected_keys.add(f"layer{l}.temporal")
    assert set(maps) == expected_keys


def test_spatial_sizes_follow_pooling_and_valid_padding():
    model = ClipClassifier(**_config(attention="spatial", padding="valid", pool_size=2))
    _, maps = model(torch.randn(2, 3, 2, 12, 16), return_attention=True)
    assert maps["layer0.spatial"].shape == (2, 3, 1, 10, 14)  # valid 3x3
    assert maps["layer1.spatial"].shape == (2, 3, 1, 3, 5)  # pool 2 -> 5x7 -> valid 3x3


def test_pixel_peepholes_follow_each_layer_size():
    model = ClipClassifier(2, [3, 4], peephole="pixel", spatial_size=[13, 16], padding="valid")
    assert model.layers[0].cell(0).peephole_weight.shape == (3, 3, 11, 14)
    assert model.layers[1].cell(0).peephole_weight.shape == (3, 4, 3, 5)  # pool: 5x7, valid
    assert model(torch.randn(1, 2, 2, 13, 16)).shape == (1, 1)
    with pytest.raises(ValueError, match='peephole="pixel" was built for spatial_size'):
        model(torch.randn(1, 2, 2, 12, 16))


@pytest.mark.parametrize("ndim", [1, 3])
def test_other_frame_dimensions(ndim):
    model = ClipClassifier(2, [3, 4], ndim=ndim, attention=["spatial", "temporal"], num_classes=2)
    x = torch.randn(2, 3, 2, *(4,) * ndim)
    assert model(x).shape == (2, 2)


def test_attention_weights_sum_to_one_where_softmax():
    model = ClipClassifier(**_config(attention=["sam", "spatial", "temporal"], multiscale=True))
    _, maps = model(torch.randn(2, 5, 2, 8, 8), return_attention=True)
    ones = torch.ones(2, 5)
    torch.testing.assert_close(maps["layer0.spatial"].sum(dim=(2, 3, 4)), ones)
    torch.testing.assert_close(maps["layer1.temporal"].sum(dim=1), torch.ones(2))
    sam = maps["layer1.hidden"]
    torch.testing.assert_close(sam.sum(-1), torch.ones(sam.shape[:-1]))
    assert (maps["layer0.spatial"] >= 0).all()


def test_sigmoid_spatial_attention_gates_in_unit_interval():
    model = ClipClassifier(**_config(attention="spatial", spatial_attention="sigmoid"))
    _, maps = model(torch.randn(2, 3, 2, 8, 8), return_attention=True)
    a = maps["layer1.spatial"]
    assert ((a > 0) & (a < 1)).all()
    assert not torch.allclose(a.sum(dim=(2, 3, 4)), torch.ones(2, 3))


def test_spatial_attention_reweights_the_pooled_state():
    # avg-pooling the softmax-attended state is the attention-weighted sum of positions
    att = SpatialAttention(3, "softmax")
    h = torch.randn(2, 3, 5, 5)
    out, a = att(h)
    torch.testing.assert_close(out.flatten(2).mean(-1), (h * a).flatten(2).sum(-1))


def test_residual_adds_the_layer_input():
    model = ClipClassifier(**_config(residual=True, hidden_channels=[4, 4], pool_size=1,
                                     batch_norm=False)).eval()
    assert model.residual == [False, True]
    x = torch.randn(2, 3, 2, 6, 6)
    first, _ = model.layers[0](x)
    second, _ = model.layers[1](first)
    expected = model.head(F.adaptive_max_pool2d(second[:, -1] + first[:, -1], 1).flatten(1))
    torch.testing.assert_close(model(x), expected)


def test_multiclass_head_and_embedding_feed_the_same_logits():
    model = ClipClassifier(**_config(num_classes=5, multiscale=True)).eval()
    x = torch.randn(2, 3, 2, 8, 8)
    torch.testing.assert_close(model.head(model.embed(x)), model(x))


@pytest.mark.parametrize("options", [{}, {"attention": ["sam", "spatial", "temporal"]}])
def test_gradient_reaches_first_layer_at_first_step(options):
    model = ClipClassifier(**_config(**options))
    grad = first_step_grad(model, torch.randn(2, 4, 2, 8, 8))
    assert grad.abs().sum() > 0
    assert model.layers[0].cell(0).weight_ih.grad.abs().sum() > 0


@pytest.mark.parametrize("options", [{}, {"attention": ["spatial", "temporal"], "num_classes": 3}])
def test_overfits_eight_clips(options):
    num_classes = options.get("num_classes", 1)
    x = torch.randn(8, 4, 1, 8, 8)
    if num_classes == 1:
        y = torch.tensor([0.0, 1, 0, 1, 1, 0, 0, 1]).unsqueeze(1)
        loss_fn = F.binary_cross_entropy_with_logits
    else:
        y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
        loss_fn = F.cross_entropy
    model = ClipClassifier(1, [6, 8], **options)
    assert overfit(model, x, y, loss_fn, steps=80) < 0.1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"hidden_channels": []}, "hidden_channels"),
        ({"hidden_channels": [4, 0]}, "hidden_channels"),
        ({"kernel_size": [3, 3, 3]}, "kernel_size must have 2 entries"),
        ({"attention": "cbam"}, "attention must be one of"),
        ({"global_pool": "sum"}, "global_pool must be one of"),
        ({"spatial_attention": "relu"}, "spatial_attention must be one of"),
        ({"dropout": 1.0}, "dropout must be a float in"),
        ({"residual": True, "padding": "valid"}, 'residual=True needs padding="same"'),
        ({"residual": True}, "residual=True needs two consecutive layers of equal width"),
        ({"num_classes": 0}, "num_classes must be an int >= 1"),
    ],
)
def test_bad_arguments_name_the_argument(options, message):
    with pytest.raises(ValueError, match=message):
        ClipClassifier(**_config(**options))


def test_bad_input_is_reported():
    model = ClipClassifier(**_config())
    with pytest.raises(ValueError, match=r"expected input \(B, T, C=2"):
        model(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"C=2"):
        model(torch.randn(2, 3, 1, 8, 8))


def test_fish_presets_shapes_at_published_size(no_fusion):
    x = torch.randn(1, 2, 4, 120, 160)  # 2 of the 30 slices keep the test fast
    for name in ("fish-2layer", "fish-1layer"):
        model = create_model(name).eval()
        with torch.no_grad():
            assert model(x).shape == (1, 1)
    model = create_model("fish-2layer", attention="spatial")
    _, maps = model(torch.randn(1, 2, 4, 20, 24), return_attention=True)
    assert maps["layer1.spatial"].shape == (1, 2, 1, 7, 9)  # 18x22 -> 9x11 -> 7x9


def test_fish_presets_follow_the_published_layers():
    model = create_model("fish-2layer")
    cells = [layer.cell(0) for layer in model.layers]
    assert [c.hidden_channels for c in cells] == [16, 32]
    assert all(c.bias is None and c.padding == "valid" for c in cells)
    assert all(c.recurrent_activation_name == "hard_sigmoid_keras2" for c in cells)
    norm = model.between[0][1]
    assert not norm.affine and norm.eps == 1e-3 and norm.momentum == pytest.approx(0.01)
    assert model.pool_mode == "max" and model.head[-1].out_features == 1
    one = create_model("fish-1layer")
    assert len(one.layers) == 1 and not one.final_norm.affine


@pytest.mark.parametrize("attention", [True, 1, {"sam": True}.items()])
def test_attention_of_another_type_is_named_in_one_line(attention):
    """``attention: true`` in a config gave "'bool' object is not iterable"."""
    with pytest.raises(ValueError, match=r"^attention must be None, one of \['sam', 'spatial', "):
        ClipClassifier(1, attention=attention)
