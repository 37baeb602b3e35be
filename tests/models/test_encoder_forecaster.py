import math

import pytest
import torch
import torch.nn.functional as F

from convlstm.models import EncoderForecaster, patchify, sampling_ratios, unpatchify
from convlstm.models.encoder_forecaster import StraightThroughClamp

from .conftest import first_step_grad, overfit


def _model(**options):
    config = {"in_channels": 1, "hidden_channels": [4, 6], "input_frames": 3, "output_frames": 2}
    return EncoderForecaster(**{**config, **options})


def _data(batch=2, size=8, steps=(3, 2)):
    x = torch.rand(batch, steps[0], 1, size, size)
    y = torch.rand(batch, steps[1], 1, size, size)
    return x, y


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"patch_size": 2},
        {"patch_size": 4, "kernel_size": [3, 5]},
        {"attention": "sam", "attention_options": {"key_stride": 2}},
        {"attention": "temporal"},
        {"attention": ["sam", "temporal"], "scheduled_sampling": "reverse", "patch_size": 2},
        {"output_activation": "identity", "layer_norm": True, "peephole": "channel"},
        {"peephole": "pixel", "spatial_size": 8, "patch_size": 2},
        {"scheduled_sampling": "reverse"},
        {"scheduled_sampling": "teacher_forcing", "output_frames": 4},
        {"predict_inputs": True, "patch_size": 2},
        {"share_weights": True, "attention": "sam", "scheduled_sampling": "linear"},
        {"share_weights": True, "scheduled_sampling": "reverse", "output_frames": 1},
    ],
    ids=lambda o: ",".join(o) or "default",
)
def test_shapes_train_and_eval(options):
    model = _model(**options)
    x, y = _data(steps=(3, model.output_frames))
    assert model.train()(x, y).shape == y.shape
    assert model.eval()(x).shape == y.shape


def test_other_frame_dimensions_and_channels():
    model = EncoderForecaster(2, [3], 3, input_frames=2, output_frames=3, ndim=1, patch_size=2)
    assert model(torch.rand(2, 2, 2, 12)).shape == (2, 3, 2, 12)
    model = EncoderForecaster(1, [3], 3, input_frames=2, output_frames=2, ndim=3, patch_size=2)
    assert model(torch.rand(1, 2, 1, 4, 4, 4)).shape == (1, 2, 1, 4, 4, 4)


def test_output_activation_matches_the_data():
    x, _ = _data()
    out = _model(output_activation="sigmoid").eval()(x * 100)
    assert ((out > 0) & (out < 1)).all()
    with torch.no_grad():
        physical = _model(output_activation="identity").eval()
        physical.head.bias.fill_(-5.0)
    assert (physical(x) < 0).any()


def test_clamp_output_has_exact_zeros_and_a_straight_through_gradient():
    clamp = StraightThroughClamp()
    x = torch.tensor([-2.0, 0.25, 3.0], requires_grad=True)
    out = clamp(x)
    torch.testing.assert_close(out, torch.tensor([0.0, 0.25, 1.0]))
    # a dark pixel whose target is bright still learns; one at its target's value does not
    F.mse_loss(out, torch.tensor([0.5, 0.25, 1.0]), reduction="sum").backward()
    torch.testing.assert_close(x.grad, torch.tensor([-1.0, 0.0, 0.0]))
    model = _model(output_activation="clamp")
    with torch.no_grad():
        model.head.bias.fill_(-5.0)
    x, _ = _data()
    assert (model.eval()(x) == 0).all()
    with pytest.raises(ValueError, match="low must be below high"):
        StraightThroughClamp(1.0, 0.0)


def test_patchify_is_pixel_unshuffle_and_inverts():
    x = torch.randn(2, 3, 8, 12)
    torch.testing.assert_close(patchify(x, 2, 2), F.pixel_unshuffle(x, 2))
    torch.testing.assert_close(unpatchify(patchify(x, 4, 2), 4, 2), x)
    v = torch.randn(2, 3, 4, 6, 8)
    torch.testing.assert_close(unpatchify(patchify(v, 2, 3), 2, 3), v)
    with pytest.raises(ValueError, match="divisible by patch_size=3"):
        patchify(x, 3, 2)


def _teacher_forced_by_hand(model, x, y):
    """Encoder over x, forecaster over [x_last, y_0 .. y_{K-2}] in one call, 1x1 head."""
    _, state = model.encoder(x)
    inputs = torch.cat([x[:, -1:], y[:, :-1]], dim=1)
    outputs, _ = model.forecaster(inputs, state)
    hidden = torch.cat(outputs, dim=2)  # every layer's hidden states, (B, K, sum F, H, W)
    return torch.sigmoid(model.head(hidden.flatten(0, 1))).unflatten(0, y.shape[:2])


def test_scheduled_sampling_ratio_one_is_teacher_forcing():
    model = _model().train()
    x, y = _data()
    out = model(x, y, teacher_forcing_ratio=1.0)
    torch.testing.assert_close(out, _teacher_forced_by_hand(model, x, y))


def test_scheduled_sampling_ratio_zero_is_free_running():
    model = _model().train()
    x, y = _data()
    free = model(x, y, teacher_forcing_ratio=0.0)
    torch.testing.assert_close(free, model.eval()(x))
    torch.testing.assert_close(model(x, y), model(x))  # eval ignores the target
    assert not torch.allclose(free, _teacher_forced_by_hand(model, x, y))


def test_intermediate_ratio_mixes_per_sample():
    model = _model(output_frames=2).train()
    x, y = _data(batch=64)
    teacher = model(x, y, teacher_forcing_ratio=1.0)
    free = model(x, y, teacher_forcing_ratio=0.0)
    mixed = model(x, y, teacher_forcing_ratio=0.5)
    torch.testing.assert_close(mixed[:, 0], teacher[:, 0])  # step 0 sees the last input frame
    is_teacher = torch.isclose(mixed[:, 1], teacher[:, 1]).flatten(1).all(1)
    is_free = torch.isclose(mixed[:, 1], free[:, 1]).flatten(1).all(1)
    assert (is_teacher | is_free).all()
    assert 16 < int(is_teacher.sum()) < 48


def test_sampling_schedules():
    assert sampling_ratios("linear", 0, 0, 100) == (1.0, 1.0)
    assert sampling_ratios("linear", 25, 0, 100) == (1.0, 0.75)
    assert sampling_ratios("linear", 500, 0, 100) == (1.0, 0.0)
    assert sampling_ratios("reverse", 0, 10, 100) == (0.5, 0.5)
    encoder, decoder = sampling_ratios("reverse", 60, 10, 100)
    assert encoder == pytest.approx(1 - 0.5 * math.exp(-2.5)) and decoder == pytest.approx(0.25)
    assert sampling_ratios("reverse", 110, 10, 100) == (1.0, 0.0)
    assert sampling_ratios("teacher_forcing", 7, 0, 1) == (1.0, 1.0)
    assert sampling_ratios("free_running", 7, 0, 1) == (1.0, 0.0)
    model = _model(sampling_steps=10)
    model.set_sampling_step(5)
    assert model.sampling_ratios() == (1.0, 0.5)


def test_reverse_sampling_returns_encoder_predictions():
    model = _model(scheduled_sampling="reverse").train()
    x, y = _data()
    out, encoder_predictions = model(x, y, return_encoder_predictions=True)
    assert out.shape == y.shape and encoder_predictions.shape == (2, 2, 1, 8, 8)
    # with the encoder fed true frames only, the encoder state is the plain encoder's
    out_true, _ = model(x, y, encoder_ratio=1.0, teacher_forcing_ratio=1.0,
                        return_encoder_predictions=True)
    torch.testing.assert_close(out_true, _teacher_forced_by_hand(model, x, y))
    with pytest.raises(ValueError, match="needs predict_inputs=True"):
        _model()(x, y, return_encoder_predictions=True)
    with pytest.raises(ValueError, match="needs predict_inputs=True"):
        _model(scheduled_sampling="reverse", predict_inputs=False)


def test_predict_inputs_gives_the_encoders_next_frame_predictions():
    model = _model(predict_inputs=True).train()
    x, y = _data()
    out, seen = model(x, y, return_encoder_predictions=True)
    # input frames 2 .. 3 predicted by the encoder head from every layer's hidden state
    outputs, _ = model.encoder(x)
    hidden = torch.cat(outputs, dim=2)[:, :-1]
    by_hand = torch.sigmoid(model.encoder_head(hidden.flatten(0, 1))).unflatten(0, (2, 2))
    torch.testing.assert_close(seen, by_hand)
    torch.testing.assert_close(out, model(x, y))  # the forecast does not change
    # the head is trained by a loss on the predictions only
    seen.sum().backward()
    assert model.encoder_head.weight.grad.abs().sum() > 0
    assert model.head.weight.grad is None


def test_shared_weights_run_one_stack_over_the_whole_sequence():
    model = _model(share_weights=True, predict_inputs=True).train()
    assert model.forecaster is None and model.encoder_head is None
    assert model.forecast_stack is model.encoder and model.input_head is model.head
    assert not any(k.startswith(("forecaster.", "encoder_head.")) for k in model.state_dict())
    x, y = _data()
    out, seen = model(x, y, teacher_forcing_ratio=1.0, return_encoder_predictions=True)
    # teacher forced: one pass of the stack over x_1 .. x_3, y_1 predicts y_1 .. y_2 and more
    outputs, _ = model.encoder(torch.cat([x, y[:, :-1]], dim=1))
    frames = torch.sigmoid(model.head(torch.cat(outputs, dim=2).flatten(0, 1))).unflatten(0, (2, 4))
    torch.testing.assert_close(seen, frames[:, :2])
    torch.testing.assert_close(out, frames[:, 2:])
    # free running at inference: each step reads the previous forecast
    model.eval()
    free = model(x)
    outputs, _ = model.encoder(torch.cat([x, free[:, :1]], dim=1))
    step = torch.sigmoid(model.head(torch.cat([o[:, -1] for o in outputs], dim=1)))
    torch.testing.assert_close(free[:, 1], step)
    with pytest.raises(ValueError, match="share_weights does not combine"):
        _model(share_weights=True, attention="temporal")


def test_reverse_sampling_with_shared_weights_feeds_the_encoder_its_predictions():
    model = _model(scheduled_sampling="reverse", share_weights=True).train()
    x, y = _data()
    mixed = model(x, y, encoder_ratio=0.0, teacher_forcing_ratio=1.0)
    true = model(x, y, encoder_ratio=1.0, teacher_forcing_ratio=1.0)
    assert mixed.shape == true.shape and not torch.allclose(mixed, true)


def test_sam_attention_maps():
    model = _model(attention="sam", patch_size=2)
    x, _ = _data()
    out, maps = model.eval()(x, return_attention=True)
    assert maps["encoder.layer1.hidden"].shape == (2, 3, 16, 16)
    assert maps["forecaster.layer0.memory"].shape == (2, 2, 16, 16)
    torch.testing.assert_close(maps["forecaster.layer1.hidden"].sum(-1), torch.ones(2, 2, 16))
    torch.testing.assert_close(out, model(x))


def test_temporal_attention_over_encoder_steps():
    model = _model(attention=["sam", "temporal"], output_frames=3)
    x, _ = _data()
    out, maps = model.eval()(x, return_attention=True)
    weights = maps["forecaster.temporal"]
    assert weights.shape == (2, 3, 3)  # (B, output_frames, input_frames)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3))
    assert "encoder.layer0.hidden" in maps
    # the context enters the output head: zeroing its input weights changes the forecast
    with torch.no_grad():
        model.head.weight[:, -6:] = 0
    assert not torch.allclose(model(x), out)


@pytest.mark.parametrize(
    "options", [{}, {"attention": "sam", "patch_size": 2}, {"attention": "temporal"}]
)
def test_gradient_reaches_first_layer_at_first_step(options):
    model = _model(**options).eval()
    x, _ = _data()
    assert first_step_grad(model, x).abs().sum() > 0
    assert model.encoder.cell(0).weight_ih.grad.abs().sum() > 0


def test_free_running_backpropagates_through_fed_back_predictions():
    model = _model(output_frames=3).eval()
    x, _ = _data()
    out = model(x)
    grads = torch.autograd.grad(out[:, 2].sum(), model.forecaster.cell(0).weight_ih)
    assert grads[0].abs().sum() > 0


@pytest.mark.parametrize("options", [{}, {"patch_size": 2, "attention": "sam"}])
def test_overfits_eight_sequences(options):
    frames = torch.rand(8, 5, 1, 8, 8)
    x, y = frames[:, :3], frames[:, 3:]
    model = _model(hidden_channels=[8, 8], scheduled_sampling="teacher_forcing", **options)
    start = F.mse_loss(model.eval()(x), y).item()
    loss = overfit(model, x, y, F.mse_loss, steps=150)
    assert loss < 0.3 * start and loss < 0.03


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"hidden_channels": 0}, "hidden_channels"),
        ({"patch_size": 0}, "patch_size must be an int >= 1"),
        ({"attention": "spatial"}, 'attention must be None, "sam", "temporal"'),
        ({"attention": "cbam"}, "attention must be one of"),
        ({"scheduled_sampling": "cosine"}, "scheduled_sampling must be one of"),
        ({"output_activation": "softmax"}, "output_activation must be one of"),
        ({"input_frames": 0}, "input_frames must be an int >= 1"),
        ({"predict_inputs": 1}, "predict_inputs must be True or False"),
        ({"share_weights": "yes"}, "share_weights must be True or False"),
    ],
)
def test_bad_arguments_name_the_argument(options, message):
    with pytest.raises(ValueError, match=message):
        _model(**options)


def test_bad_inputs_are_reported():
    model = _model().train()
    x, y = _data()
    with pytest.raises(ValueError, match="input_frames=3"):
        model(x[:, :2])
    with pytest.raises(ValueError, match="target must have shape"):
        model(x, y[:, :1])
    with pytest.raises(ValueError, match="teacher_forcing_ratio must be in"):
        model(x, y, teacher_forcing_ratio=1.5)
    with pytest.raises(ValueError, match="divisible by patch_size=3"):
        _model(patch_size=3)(x)
