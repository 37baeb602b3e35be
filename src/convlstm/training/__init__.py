"""Training, evaluation and prediction with Lightning: the engine behind the CLI."""

from .config import ConfigError, RunConfig, config_from_dict, load_config
from .run import Run, load, resume, train

__all__ = ["ConfigError", "Run", "RunConfig", "config_from_dict", "load", "load_config",
           "resume", "train"]  # fmt: skip
