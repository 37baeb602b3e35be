"""Name -> data set class registry, so configs can say ``name: moving_digits``.

    >>> from convlstm.data import create_dataset
    >>> ds = create_dataset("moving_digits", split="test", num_samples=100, seed=1)
"""

from __future__ import annotations

from torch.utils.data import Dataset

from ..registry import Registry

DATASETS: Registry[type[Dataset]] = Registry("data set")

#: Class decorator registering a data set under a name (its class name works too).
register_dataset = DATASETS.register
#: Registered data set names, sorted.
list_datasets = DATASETS.names
#: The class registered under a name (or with that class name, any case).
get_dataset_class = DATASETS.get
#: Build a registered data set from plain config values (unknown keys are named).
create_dataset = DATASETS.create
