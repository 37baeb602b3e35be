"""Step hooks (``ConvLSTMCellNd.register_step_hook``) see every step, also of a layer
that takes the fused sequence path, and leave its results unchanged."""

from __future__ import annotations

import itertools

import pytest
import torch

from convlstm.nn import ConvLSTM2d, ConvLSTMCell2d, StepRecord

from .conftest import perturb

# 2 x 16 channels x 48 x 48 = 73,728 cell elements per step: the fast path's size.
BATCH, CHANNELS, SIZE, STEPS = 2, 16, 48, 5


def _clip(steps: int = STEPS) -> torch.Tensor:
    return torch.randn(BATCH, steps, 1, SIZE, SIZE)


def test_hooks_see_every_step_and_leave_the_fast_path_result_unchanged(fused_cells):
    model = perturb(ConvLSTM2d(1, CHANNELS, 3, num_layers=2, bidirectional=True), 0.1)
    x = _clip().requires_grad_(True)
    expected, (h_n, c_n) = model(x)
    assert fused_cells == [id(cell) for cell in model.cells]  # all four ran fused
    expected_grad = torch.autograd.grad(expected.square().sum(), x)[0]

    records: dict[int, list[StepRecord]] = {index: [] for index in range(len(model.cells))}
    handles = []
    for index, cell in enumerate(model.cells):

        def hook(seen, record, index=index, cell=cell):
            assert seen is cell
            records[index].append(record)

        handles.append(cell.register_step_hook(hook))
    fused_cells.clear()
    out, (h_hooked, c_hooked) = model(x)
    assert fused_cells == []  # hooked cells run step by step
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c_hooked, c_n, rtol=1e-5, atol=1e-5)
    grad = torch.autograd.grad(out.square().sum(), x, retain_graph=True)[0]
    torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-5)

    for index, cell_records in records.items():
        direction = index % 2
        assert [r.t for r in cell_records] == (
            list(range(STEPS)) if direction == 0 else list(range(STEPS - 1, -1, -1))
        )
        assert all(r.reverse == (direction == 1) for r in cell_records)
        part = slice(direction * CHANNELS, (direction + 1) * CHANNELS)
        for record in cell_records:
            if index >= 2:  # the last layer: its hidden states are the output
                torch.testing.assert_close(record.new_state[0], out[:, record.t, part])
        for before, after in itertools.pairwise(cell_records):
            assert after.state[0] is before.new_state[0]
            assert after.state[1] is before.new_state[1]
        last = cell_records[-1].new_state
        torch.testing.assert_close(last[1], c_hooked[index])

    # Every recorded state is a node of the graph: its gradient exists, as for any tensor.
    first_hidden = records[0][0].new_state[0]
    (grad_h,) = torch.autograd.grad(out.square().sum(), first_hidden)
    assert grad_h.shape == (BATCH, CHANNELS, SIZE, SIZE) and grad_h.abs().sum() > 0

    for handle in handles:
        handle.remove()
    assert not any(cell.has_step_hooks for cell in model.cells)
    seen = sum(len(r) for r in records.values())
    model(x)
    assert fused_cells == [id(cell) for cell in model.cells]  # the fast path is back
    assert sum(len(r) for r in records.values()) == seen


def test_a_hooked_cell_of_one_layer_does_not_slow_the_others(fused_cells):
    model = ConvLSTM2d(1, CHANNELS, 3, num_layers=2)
    steps: list[int] = []
    handle = model.cells[1].register_step_hook(lambda cell, record: steps.append(record.t))
    with torch.no_grad():
        model(_clip())
    handle.remove()
    assert fused_cells == [id(model.cells[0])]
    assert steps == list(range(STEPS))


def test_hook_on_a_cell_stepped_by_hand():
    cell = ConvLSTMCell2d(1, CHANNELS, 3)
    records: list[StepRecord] = []
    cell.register_step_hook(lambda seen, record: records.append(record))
    x = _clip(steps=1)[:, 0]
    h, c = cell(x)
    (record,) = records
    assert record.t == 0 and not record.reverse
    assert record.new_state[0] is h and record.new_state[1] is c
    assert all(s.abs().sum() == 0 for s in record.state)  # the zero initial state
    assert record.recurrent_mask is None


def test_hook_with_lengths_and_recurrent_dropout():
    model = ConvLSTM2d(1, CHANNELS, 3, recurrent_dropout=0.5).train()
    records: list[StepRecord] = []
    model.cells[0].register_step_hook(lambda cell, record: records.append(record))
    model(_clip(), lengths=[STEPS, 2])
    assert [r.t for r in records] == list(range(STEPS))
    mask = records[0].recurrent_mask
    assert mask is not None and mask.shape == (BATCH, CHANNELS, SIZE, SIZE)
    assert all(r.recurrent_mask is mask for r in records)  # one mask per sequence


def test_register_step_hook_rejects_a_non_callable():
    with pytest.raises(TypeError, match=r"hook must be callable as hook\(cell, record\), got int"):
        ConvLSTMCell2d(1, 2, 3).register_step_hook(3)
