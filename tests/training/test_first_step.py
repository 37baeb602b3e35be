"""The first training step and validation of each bundled model, at the sizes its
config trains at: on CPUs with the hand-written gate loops (AVX2 or AVX-512 BF16),
nothing is compiled on first use. A generated loop compiles in the first step, which
takes tens of seconds with an empty compile cache (``docs/performance.md``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from convlstm.training.config import config_from_dict, deep_merge, resolve_config
from convlstm.training.run import _prepare, load_yaml
from tests.nn.conftest import needs_loops

# Few samples, the configs' batch and frame sizes; the schedule over steps, since a
# time schedule needs the trainer's time budget.
SMALL = {
    "data": {"train": {"num_samples": 16}, "val": {"num_samples": 8}, "test": {"num_samples": 8}},
    "scheduler": {"over": "steps"},
}


def _config(name: str, model_from: str | None = None):
    raw = deep_merge(load_yaml(resolve_config(name)), SMALL)
    if model_from is not None:  # another config's model on this one's data
        raw["model"] = load_yaml(resolve_config(model_from))["model"]
        raw["model"]["input_frames"] = raw["data"]["input_frames"]
        raw["model"]["output_frames"] = raw["data"]["output_frames"]
    return config_from_dict(raw)


@needs_loops
@pytest.mark.parametrize(
    "name,model_from",
    [
        ("moving_digits", None),
        ("similar_motions", None),
        ("radar_nowcast", None),
        # radar_real's model (ConvLSTMs correcting pysteps' motion), on generated echoes
        ("radar_nowcast", "radar_real"),
    ],
)
def test_a_bundled_model_compiles_nothing_in_its_first_step(
    name, model_from, generated_loops, tmp_path: Path
):
    if model_from == "radar_real" and importlib.util.find_spec("pysteps") is None:
        pytest.skip("radar_real's model needs pysteps (convlstm[radar])")
    import lightning.pytorch as pl

    prepared = _prepare(_config(name, model_from), tmp_path)
    steps = []

    class Count(pl.Callback):
        def on_train_batch_end(self, *args) -> None:
            steps.append(1)

    trainer = pl.Trainer(
        max_steps=1, limit_val_batches=1, num_sanity_val_steps=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[Count()],
    )  # fmt: skip
    trainer.fit(prepared.task, prepared.datamodule)
    assert steps == [1]
    assert generated_loops == []
