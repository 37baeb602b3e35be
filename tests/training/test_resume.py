"""A run killed mid-epoch and resumed from a copy of its folder ends with the weights of an
uninterrupted run, bit for bit, and keeps the history it logged before the kill."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from convlstm.training.run import read_history

from .conftest import TINY_CLASSIFICATION, write_config
from .walk import ENV, cli, tiny

KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import lightning.pytorch as pl
    from convlstm.training import trainer

    class Kill(pl.Callback):  # SIGKILL: no cleanup, as when a machine goes away
        def on_train_batch_start(self, trainer, *args):
            if trainer.global_step == int(sys.argv[3]):
                os.kill(os.getpid(), signal.SIGKILL)

    build = trainer.build_trainer
    def build_with_kill(*args, **kwargs):
        result = build(*args, **kwargs)
        result.callbacks.append(Kill())
        return result
    trainer.build_trainer = build_with_kill
    from convlstm.cli import main
    sys.exit(main(["train", sys.argv[1], "--run-dir", sys.argv[2]]))
    """
)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    # 4 batches an epoch, a checkpoint after every step, dropout drawing from the RNG.
    config = write_config(
        tiny(TINY_CLASSIFICATION, root, trainer={"max_epochs": 3, "checkpoint_every_n_steps": 1}),
        root / "c.yaml",
    )
    cli("train", config, "--run-dir", root / "reference")
    killed = root / "killed"
    process = subprocess.run([sys.executable, "-c", KILLER, str(config), str(killed), "6"],
                             env=ENV, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert process.returncode == -9, process.stderr[-2000:]
    before = read_history(killed)
    moved = Path(shutil.copytree(killed, root / "elsewhere" / "killed"))
    shutil.rmtree(killed)  # the copy must not need the original's files
    resumed = cli("train", "--resume", moved)
    return root / "reference", moved, before, resumed


def test_killed_mid_epoch_resumes_to_identical_weights(runs):
    reference, moved, _, _ = runs
    expected, got = _weights(reference), _weights(moved)
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)
    best = torch.load(moved / "checkpoints" / "best.ckpt", weights_only=True)
    assert best["global_step"] == torch.load(
        reference / "checkpoints" / "best.ckpt", weights_only=True
    )["global_step"]


def test_resume_keeps_the_history_from_before_the_kill(runs):
    reference, moved, before, _ = runs
    assert [row["epoch"] for row in before] == [0, 1]  # epoch 1 was cut short
    history, expected = read_history(moved), read_history(reference)
    assert [row["epoch"] for row in history] == [0, 1, 2]
    for got, want in zip(history, expected):
        for key in ("val_loss", "val_accuracy"):
            assert got[key] == pytest.approx(want[key], rel=1e-6), (got["epoch"], key)
    assert history[0] == pytest.approx(before[0])  # the epoch before the kill is kept as it was
    events = list((moved / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    if events:  # TensorBoard is optional: its old event file is kept beside the new one
        assert len(events) == 2


def test_killed_before_the_first_validation_resumes_from_its_step_checkpoint(runs):
    """Lightning holds a step checkpoint back until the monitored score exists, so a run
    killed in its first epoch (of a large data set: hours) had nothing to resume from and
    started again. last.ckpt is written on time; the resumed run still ends as the
    uninterrupted one, bit for bit."""
    reference = runs[0]
    config, killed = reference.parent / "c.yaml", reference.parent / "killed-early"
    process = subprocess.run([sys.executable, "-c", KILLER, str(config), str(killed), "3"],
                             env=ENV, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert process.returncode == -9, process.stderr[-2000:]
    last = killed / "checkpoints" / "last.ckpt"
    assert last.is_file(), "no checkpoint before the first validation"
    assert torch.load(last, weights_only=True)["global_step"] == 3
    assert not (killed / "checkpoints" / "best.ckpt").exists()  # no score yet to be best on
    cli("train", "--resume", killed)
    expected, got = _weights(reference), _weights(killed)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=key)
