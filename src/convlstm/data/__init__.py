"""Data sets, readers, splits, balance and augmentation for ConvLSTM workflows.

Every data set is a map-style ``torch.utils.data.Dataset`` of ``(T, C, H, W)`` float32
samples: forecasting data sets return ``(inputs, targets)``, classification data sets
``(clip, label)``. All are built from plain (JSON/YAML-friendly) values, also by name
through :func:`create_dataset`. Nothing is ever downloaded.
"""

from .arrays import ArraySequences, open_array, parse_axes
from .augment import Augmented, ClipAugment, jitter_start
from .moving_digits import MovingDigits, MovingDigitsFile, load_digit_images, read_idx_images
from .normalization import Normalized, NormStats, compute_norm_stats
from .preprocessing import Preprocessing
from .radar import RadarEchoes
from .radar_files import RadarFiles
from .registry import create_dataset, get_dataset_class, list_datasets, register_dataset
from .sampling import (
    BalancedSampler,
    balanced_sampler,
    class_counts,
    class_weights,
    labels_of,
    set_dataset_epoch,
)
from .similar_motions import MOTIONS, SimilarMotions, motion_steps
from .splits import (
    split_by_time,
    split_dataset,
    split_groups,
    split_random,
    time_split_bounds,
    window_starts,
)
from .time_channels import TimeChannelClips, burst_labels, frame_differences
from .video import FrameFolder, VideoFolder
from .xarray_sequences import XarraySequences

__all__ = [
    "MOTIONS",
    "ArraySequences",
    "Augmented",
    "BalancedSampler",
    "ClipAugment",
    "FrameFolder",
    "MovingDigits",
    "MovingDigitsFile",
    "NormStats",
    "Normalized",
    "Preprocessing",
    "RadarEchoes",
    "RadarFiles",
    "SimilarMotions",
    "TimeChannelClips",
    "VideoFolder",
    "XarraySequences",
    "balanced_sampler",
    "burst_labels",
    "class_counts",
    "class_weights",
    "compute_norm_stats",
    "create_dataset",
    "frame_differences",
    "get_dataset_class",
    "jitter_start",
    "labels_of",
    "list_datasets",
    "load_digit_images",
    "motion_steps",
    "open_array",
    "parse_axes",
    "read_idx_images",
    "register_dataset",
    "set_dataset_epoch",
    "split_by_time",
    "split_dataset",
    "split_groups",
    "split_random",
    "time_split_bounds",
    "window_starts",
]
