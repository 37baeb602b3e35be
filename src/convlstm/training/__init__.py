"""Training, evaluation and prediction with Lightning: the engine behind the CLI."""

from .config import ConfigError, RunConfig, config_from_dict, load_config

__all__ = ["ConfigError", "Run", "RunConfig", "config_from_dict", "load", "load_config",
           "resume", "train"]  # fmt: skip

_RUN = {"Run", "load", "resume", "train"}


def __getattr__(name: str):
    # The run API imports Lightning (seconds): load it on first use, so that reading a
    # config or `convlstm --help` does not pay for it.
    if name in _RUN:
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module 'convlstm.training' has no attribute {name!r}")
