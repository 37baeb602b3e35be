"""Errors of the training engine (kept free of heavy imports for the CLI)."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""
