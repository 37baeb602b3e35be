"""The ``LightningDataModule`` built from a run's ``data`` config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .. import data as datasets
from ..data.preprocessing import Preprocessing, dataset_preprocessing
from ..data.registry import DATASETS
from .config import ConfigError, DataConfig

SPLITS = ("train", "val", "test")


class EpochShuffleSampler(Sampler[int]):
    """A random permutation that depends only on ``(seed, epoch)``, so a resumed run sees
    the batches an uninterrupted one would. Lightning calls ``set_epoch`` every epoch;
    the data set's own ``set_epoch`` (fresh generated samples) is called too."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        datasets.set_dataset_epoch(self.dataset, epoch)

    def skip_next(self, count: int) -> None:
        """Start the next pass ``count`` samples into its permutation: a run resumed from
        a mid-epoch checkpoint then sees the rest of the epoch an uninterrupted run saw."""
        self._skip = count

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.dataset), generator=generator).tolist()
        skip, self._skip = getattr(self, "_skip", 0), 0
        return iter(order[skip:])


class ResumeMidEpoch(pl.Callback):
    """On resuming from a mid-epoch checkpoint, make the training sampler skip the batches
    the checkpointed run had already trained on in that epoch (Lightning restores the
    loop's position but would otherwise draw those batches again)."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Checkpoints are written in on_train_batch_end, after the batch is processed
        # but before Lightning counts it completed.
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        loader = trainer.train_dataloader
        sampler = getattr(loader, "sampler", None)
        mid_epoch = 0 < done < trainer.num_training_batches
        if mid_epoch and isinstance(sampler, (EpochShuffleSampler, datasets.BalancedSampler)):
            sampler.skip_next(done * loader.batch_size)


def build_datasets(config: DataConfig, seed: int) -> dict[str, Dataset]:
    """Train, val and test data sets from a ``data`` config (see ``DataConfig``)."""
    try:
        cls = datasets.get_dataset_class(config.name)
    except KeyError as error:
        raise ConfigError(f"data.name: {error.args[0]}") from None
    accepted = DATASETS.accepted(config.name)
    for where, options in [("data", config.options)] + [
        (f"data.{s}", getattr(config, s)) for s in SPLITS
    ]:
        unknown = sorted(set(options) - set(accepted)) if accepted is not None else []
        if unknown:
            raise ConfigError(
                f"unknown config key {where}.{unknown[0]} for data set {config.name!r} "
                f"({cls.__name__}); valid keys: {sorted(accepted or [])}"
            )
    if "split" in (accepted or []):
        return {
            split: cls(**{**config.options, **getattr(config, split), "split": split})
            for split in SPLITS
        }
    whole = cls(**config.options)
    train = 1.0 - config.val_fraction - config.test_fraction
    return datasets.split_dataset(
        whole, by=config.split_by, fractions=(train, config.val_fraction, config.test_fraction),
        seed=seed,
    )  # fmt: skip


class SequenceDataModule(pl.LightningDataModule):
    """Data loaders for one run: shuffling by ``(seed, epoch)``, optional augmentation,
    normalisation (statistics from the training split, saved with the run), class
    weights and a balanced sampler."""

    def __init__(self, config: DataConfig, seed: int = 0, run_dir: str | Path | None = None):
        super().__init__()
        self.config, self.seed = config, seed
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.datasets: dict[str, Dataset] = {}
        self.norm_stats = None
        self.preprocessing = Preprocessing()  # from files to samples, set by setup()

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        built = build_datasets(self.config, self.seed)
        for split, dataset in built.items():
            if len(dataset) == 0:
                raise ConfigError(
                    f"data: the {split} split of data set {self.config.name!r} is empty; "
                    "check the data options and split fractions"
                )
        self.preprocessing = dataset_preprocessing(built["train"])
        if self.config.normalize:
            stats_path = self.run_dir / "norm_stats.json" if self.run_dir else None
            if stats_path is not None and stats_path.is_file():
                self.norm_stats = datasets.NormStats.load(stats_path)
            else:
                self.norm_stats = datasets.compute_norm_stats(built["train"])
                if stats_path is not None:
                    self.norm_stats.save(stats_path)
            built = {k: datasets.Normalized(v, self.norm_stats) for k, v in built.items()}
            self.preprocessing = self.preprocessing.then(
                {"op": "normalize", "mean": self.norm_stats.mean, "std": self.norm_stats.std}
            )
        if self.config.augment:
            augment = datasets.ClipAugment(**self.config.augment)
            built["train"] = datasets.Augmented(built["train"], augment)
        self.datasets = built

    def class_weights(self) -> torch.Tensor | None:
        """Inverse-frequency weights from the training split (``data.class_weights``)."""
        if not self.config.class_weights:
            return None
        self.setup()
        return datasets.class_weights(self.datasets["train"])

    def _loader(self, split: str, sampler: Sampler | None = None) -> DataLoader:
        batch = self.config.batch_size if split == "train" else (
            self.config.eval_batch_size or self.config.batch_size
        )  # fmt: skip
        return DataLoader(
            self.datasets[split],
            batch_size=batch,
            sampler=sampler,
            num_workers=self.config.num_workers,
            persistent_workers=self.config.num_workers > 0,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        if self.config.balanced_sampler:
            sampler = datasets.balanced_sampler(self.datasets["train"], seed=self.seed)
        else:
            sampler = EpochShuffleSampler(self.datasets["train"], self.seed)
        return self._loader("train", sampler)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
