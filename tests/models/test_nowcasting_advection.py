"""AdvectionForecaster: semi-Lagrangian warping, persistence when untrained, and motion
learnt from moving rain in a few steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convlstm.models import create_model
from convlstm.models.advection_forecaster import AdvectionForecaster, match_ranks, warp


def test_warp_moves_frames_by_whole_and_half_pixels():
    frame = torch.zeros(1, 1, 8, 8)
    frame[0, 0, 2, 3] = 1.0
    shift = torch.zeros(1, 2, 8, 8)
    shift[:, 0], shift[:, 1] = 1.0, 2.0  # one row down, two columns right
    moved = warp(frame, shift)
    assert moved[0, 0, 3, 5] == pytest.approx(1.0) and float(moved.sum()) == pytest.approx(1.0)
    half = warp(frame, torch.full((1, 2, 8, 8), 0.5) * torch.tensor([0.0, 1.0]).view(1, 2, 1, 1))
    assert half[0, 0, 2, 3:5].tolist() == pytest.approx([0.5, 0.5])
    # what enters from outside the frame is 0 (dry)
    assert float(warp(torch.ones(1, 1, 4, 4), shift[..., :4, :4])[0, 0, 0].sum()) == 0.0


def test_untrained_model_is_persistence():
    model = create_model("advection-forecaster", hidden_channels=[4], input_frames=3,
                         output_frames=2, patch_size=4)  # fmt: skip
    x = torch.rand(2, 3, 1, 16, 12)
    out, motion = model(x, return_motion=True)
    assert out.shape == (2, 2, 1, 16, 12) and motion.shape == (2, 2, 2, 16, 12)
    torch.testing.assert_close(out, x[:, -1:].expand(-1, 2, -1, -1, -1))
    with pytest.raises(ValueError, match=r"divisible by patch_size=4"):
        model(torch.rand(1, 3, 1, 10, 12))
    with pytest.raises(ValueError, match=r"input_frames=3"):
        model(torch.rand(1, 4, 1, 16, 12))


def blobs(frames: int, velocity, size: int, rng: np.random.Generator) -> torch.Tensor:
    """log(1 + R) of ten rain cells all over the frame, moving ``velocity`` pixels per frame."""
    centres = rng.uniform(0, size, (10, 2))
    peaks, widths = rng.uniform(2, 20, 10), rng.uniform(2, 4, 10)
    rows, cols = np.mgrid[0:size, 0:size].astype(float)
    out = np.zeros((frames, size, size))
    for t in range(frames):
        for (r, c), peak, width in zip(centres + t * np.asarray(velocity), peaks, widths):
            out[t] += peak * np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * width**2))
    return torch.from_numpy(np.log1p(out).astype(np.float32))[None, :, None]


def test_motion_is_learnt_from_moving_rain():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = AdvectionForecaster(hidden_channels=[8], input_frames=3, output_frames=3,
                                patch_size=4)  # fmt: skip
    optimizer = torch.optim.Adam(model.parameters(), 2e-2)

    def batch():
        rain = torch.cat([blobs(6, (1.0, -1.0), 32, rng) for _ in range(4)])
        return rain[:, :3], rain[:, 3:]

    x_test, y_test = batch()
    persistence = float(((x_test[:, -1:] - y_test) ** 2).mean())
    for _ in range(40):
        x, y = batch()
        loss = ((model(x, y) - y) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        error = float(((model(x_test) - y_test) ** 2).mean())
        _, motion = model(x_test, return_motion=True)
    assert error < 0.4 * persistence, (error, persistence)
    # one row down and one column left per step, in the first lead time at least
    centre = motion[:, :, :, 8:24, 8:24].mean(dim=(0, 3, 4))
    torch.testing.assert_close(centre[0], torch.tensor([1.0, -1.0]), atol=0.3, rtol=0.0)
    assert centre[2, 0] > centre[1, 0] > centre[0, 0] and centre[2, 1] < centre[1, 1] < 0


def test_probability_matching_gives_the_last_frame_values_by_rank():
    frames = torch.tensor([0.1, 0.5, 0.3, 0.0]).view(1, 1, 1, 2, 2).repeat(1, 2, 1, 1, 1)
    reference = torch.tensor([2.0, 0.0, 0.0, 1.0]).view(1, 1, 2, 2)
    out = match_ranks(frames, reference)
    expected = torch.tensor([0.0, 2.0, 1.0, 0.0]).view(1, 1, 1, 2, 2)
    torch.testing.assert_close(out, expected.expand(1, 2, 1, 2, 2))
    model = AdvectionForecaster(hidden_channels=[4], input_frames=2, output_frames=2,
                                patch_size=4, probability_matching=True)  # fmt: skip
    with torch.no_grad():
        model.source_head.bias.fill_(0.3)  # forecasts all wetter than the observation
    x = torch.rand(1, 2, 1, 8, 8)
    assert float(model.train()(x).detach().mean()) == pytest.approx(float(x[:, -1].mean()) + 0.3)
    matched = model.eval()(x)  # the observation's values, placed where the forecast puts them
    torch.testing.assert_close(matched[0, 1].flatten().sort().values,
                               x[0, -1].flatten().sort().values)  # fmt: skip


def test_optical_flow_prior_makes_the_untrained_model_an_extrapolation():
    pytest.importorskip("pysteps", reason="the optical-flow prior needs convlstm[radar]")
    from convlstm.metrics import nowcast_scores

    rng = np.random.default_rng(1)
    rain = blobs(9, (1.0, -1.5), 64, rng)  # log(1 + R)
    model = AdvectionForecaster(hidden_channels=[4], input_frames=4, output_frames=5,
                                patch_size=4, motion_prior="optical_flow")  # fmt: skip
    with torch.no_grad():
        forecast = torch.expm1(model(rain[:, :4]))
    truth, still = torch.expm1(rain[:, 4:]), torch.expm1(rain[:, 3:4])
    moved = [nowcast_scores(forecast[:, k], truth[:, k], 1.0)["csi"] for k in range(5)]
    kept = [nowcast_scores(still[:, 0], truth[:, k], 1.0)["csi"] for k in range(5)]
    assert min(moved) > 0.85 and moved[-1] > kept[-1] + 0.2, (moved, kept)


def test_gaussian_blur_keeps_mass_and_matches_a_dense_reference():
    from convlstm.models.advection_forecaster import gaussian_blur

    x = torch.zeros(1, 1, 41, 41, dtype=torch.float64)
    x[0, 0, 20, 20] = 1.0
    out = gaussian_blur(x, 2.0)
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-9)  # nothing reaches the edge
    rows, cols = torch.meshgrid(torch.arange(41.0), torch.arange(41.0), indexing="ij")
    dense = torch.exp(-((rows - 20) ** 2 + (cols - 20) ** 2) / 8).double()
    dense[(rows - 20).abs() > 6] = 0  # truncated at 3 sigma, per axis
    dense[(cols - 20).abs() > 6] = 0
    torch.testing.assert_close(out[0, 0], dense / dense.sum())
    assert gaussian_blur(x, 0.0) is x


def test_match_in_training_charges_the_loss_on_the_matched_forecast_straight_through():
    """In training the forecast takes the last frame's values by rank, as in evaluation,
    and the gradient passes the matching unchanged: the same parameter gradients as the
    unmatched forecast's for the same output gradient."""
    with pytest.raises(ValueError, match="match_in_training needs probability_matching"):
        AdvectionForecaster(match_in_training=True)
    torch.manual_seed(0)
    options = dict(hidden_channels=[4], input_frames=2, output_frames=3, patch_size=4,
                   smoothing_scales=[0, 1, 2], source_term=False, probability_matching=True)
    matched = AdvectionForecaster(match_in_training=True, **options).train()
    plain = AdvectionForecaster(**options).train()
    plain.load_state_dict(matched.state_dict())
    with torch.no_grad():  # weights away from the start, so the blur mix is not trivial
        for p in matched.parameters():
            p.add_(0.1 * torch.randn_like(p))
        plain.load_state_dict(matched.state_dict())
    x = torch.rand(2, 2, 1, 16, 16)
    out, raw = matched(x), plain(x)
    assert not torch.allclose(out, raw)
    for k in range(3):  # the observation's values, placed where the forecast puts them
        torch.testing.assert_close(out[0, k].flatten().sort().values,
                                   x[0, -1].flatten().sort().values)  # fmt: skip
    torch.testing.assert_close(out, match_ranks(raw.detach(), x[:, -1]))
    g = torch.randn_like(out)
    grads = torch.autograd.grad((out * g).sum(), list(matched.parameters()), allow_unused=True)
    expected = torch.autograd.grad((raw * g).sum(), list(plain.parameters()), allow_unused=True)
    assert sum(e is not None for e in expected) > 0
    for got, want in zip(grads, expected):
        if want is None:
            assert got is None
        else:
            torch.testing.assert_close(got, want)


def test_smoothing_head_learns_to_blur_unpredictable_detail():
    """Targets are the input's blurred version (detail that cannot be forecast): the scale
    head must move its weight off the unblurred frame, and the loss must fall."""
    from convlstm.models.advection_forecaster import gaussian_blur

    torch.manual_seed(0)
    model = AdvectionForecaster(hidden_channels=[8], input_frames=2, output_frames=2,
                                patch_size=4, smoothing_scales=[0, 2, 4])  # fmt: skip
    with pytest.raises(ValueError, match="starting with 0"):
        AdvectionForecaster(smoothing_scales=[1, 2])
    optimizer = torch.optim.Adam(model.parameters(), 2e-2)
    losses = []
    for _ in range(40):
        x = torch.rand(4, 2, 1, 32, 32)
        target = gaussian_blur(x[:, -1], 3.0).unsqueeze(1).expand(-1, 2, -1, -1, -1)
        loss = torch.nn.functional.mse_loss(model(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]
    seen = []
    model.scale_head.register_forward_hook(lambda m, i, out: seen.append(out.softmax(1)))
    with torch.no_grad():
        model(torch.rand(4, 2, 1, 32, 32))
    unblurred = float(torch.cat(seen)[:, 0].mean())
    assert unblurred < 0.6, f"{unblurred:.2f} still on the unblurred frame (0.93 at first)"


def test_without_a_source_term_the_forecast_only_moves_the_observed_frame():
    model = AdvectionForecaster(hidden_channels=[4], input_frames=2, output_frames=2,
                                patch_size=4, source_term=False)  # fmt: skip
    assert model.source_head is None
    assert not any(name.startswith("source_head") for name, _ in model.named_parameters())
    x = torch.rand(1, 2, 1, 16, 16)
    torch.testing.assert_close(model(x), x[:, -1:].expand(-1, 2, -1, -1, -1))


def test_sprog_prior_mixes_in_pysteps_sprog_forecast_along_the_same_motion():
    """With the scale head's weight all on the S-PROG candidate, the untrained model's
    forecast is S-PROG's (unmatched, in the frames' units) on the optical flow's motion;
    on translating rain that is close to the truth, and the head's weights get gradients
    through both candidates."""
    pytest.importorskip("pysteps", reason="the S-PROG prior needs convlstm[radar]")
    from convlstm.metrics import nowcast_scores
    from convlstm.models.advection_forecaster import optical_flow_motion, sprog_forecast

    with pytest.raises(ValueError, match="sprog_prior needs motion_prior: optical_flow"):
        AdvectionForecaster(sprog_prior=True, smoothing_scales=[0])
    with pytest.raises(ValueError, match="and smoothing_scales"):
        AdvectionForecaster(sprog_prior=True, motion_prior="optical_flow")
    with pytest.raises(ValueError, match="input_frames >= 3"):
        AdvectionForecaster(input_frames=2, sprog_prior=True, motion_prior="optical_flow",
                            smoothing_scales=[0])  # fmt: skip
    rng = np.random.default_rng(2)
    rain = blobs(9, (1.0, -1.5), 64, rng)  # log(1 + R)
    x, truth = rain[:, :4], torch.expm1(rain[:, 4:])
    model = AdvectionForecaster(hidden_channels=[4], input_frames=4, output_frames=5,
                                patch_size=4, motion_prior="optical_flow",
                                smoothing_scales=[0], sprog_prior=True).eval()  # fmt: skip
    assert model.scale_head.out_channels == 2
    expected, valid = sprog_forecast(x, optical_flow_motion(x), 5)
    assert valid.tolist() == [True] and float(expected.amax()) > 1.0
    with torch.no_grad():
        model.scale_head.bias.copy_(torch.tensor([-30.0, 30.0]))
        torch.testing.assert_close(model(x), expected)
    csi = [nowcast_scores(torch.expm1(expected[:, k]), truth[:, k], 1.0)["csi"] for k in range(5)]
    assert min(csi) > 0.7, csi
    # a dry frame among the three S-PROG fits on: no S-PROG forecast, the moved frame
    dry = x.clone()
    dry[:, 2] = 0
    forecast, valid = sprog_forecast(dry, optical_flow_motion(dry), 5)
    assert valid.tolist() == [False] and float(forecast.abs().sum()) == 0.0
    with torch.no_grad():
        model.scale_head.bias.copy_(torch.tensor([0.0, 0.0]))
        kept = model(dry)
        model.scale_head.bias.copy_(torch.tensor([30.0, -30.0]))
        torch.testing.assert_close(kept, model(dry))
    model.train()
    model.scale_head.bias.data.zero_()
    model(x).sum().backward()
    assert float(model.scale_head.bias.grad.abs().sum()) > 0


def test_sprog_prior_on_still_rain_falls_back_to_the_moved_frame():
    """Identical inputs make S-PROG's AR fit singular (this stopped a training at step
    100): that sample has no S-PROG forecast, and the model moves the last frame."""
    pytest.importorskip("pysteps", reason="the S-PROG prior needs convlstm[radar]")
    from convlstm.models.advection_forecaster import sprog_forecast

    x = torch.zeros(2, 4, 1, 32, 32)
    x[:, :, :, 8:20, 8:20] = 1.0
    x[1] = blobs(4, (1.0, 0.5), 32, np.random.default_rng(3))[0]
    forecast, valid = sprog_forecast(x, torch.zeros(2, 2, 32, 32), 3)
    assert valid.tolist() == [False, True] and float(forecast[0].abs().sum()) == 0.0
    model = AdvectionForecaster(hidden_channels=[4], input_frames=4, output_frames=3,
                                patch_size=4, motion_prior="optical_flow",
                                smoothing_scales=[0], sprog_prior=True)  # fmt: skip
    model(x).sum().backward()  # trains through such a batch


def test_sprog_prior_model_at_fast_path_size_matches_the_plain_path():
    """At a size the fast path takes (16 channels on 64x64 cells: 65,536 state elements a
    sample and step), the S-PROG-prior nowcaster's forecast and gradients are the plain
    path's."""
    pytest.importorskip("pysteps", reason="the S-PROG prior needs convlstm[radar]")
    from convlstm.nn import set_fusion
    from convlstm.nn.settings import get_fusion

    rng = np.random.default_rng(0)
    x = torch.cat([blobs(4, (1.0, -1.5), 128, rng) for _ in range(2)])
    torch.manual_seed(0)
    model = AdvectionForecaster(hidden_channels=[16], input_frames=4, output_frames=3,
                                patch_size=2, motion_prior="optical_flow",
                                smoothing_scales=[0], sprog_prior=True)  # fmt: skip
    with torch.no_grad():  # heads away from zero, so that every path carries weight
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    results, before = {}, get_fusion()
    try:
        for mode in ("always", "never"):
            set_fusion(mode)
            model.zero_grad()
            out = model(x)
            out.square().mean().backward()
            results[mode] = (out.detach(), [p.grad.clone() for p in model.parameters()])
    finally:
        set_fusion(before)
    (fast, fast_grads), (plain, plain_grads) = results["always"], results["never"]
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)
    for got, want in zip(fast_grads, plain_grads):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-5)
