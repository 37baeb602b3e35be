"""Process-wide settings the command-line tool applies before it trains or predicts."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator

# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4


def configure_malloc() -> bool:
    """Let glibc malloc keep and reuse freed memory instead of returning it to the OS.

    By default glibc serves every allocation above 32 MiB with a fresh ``mmap`` and
    unmaps it on free, so each large tensor of every training step is page-faulted in
    again (measured on 2 cores: a training step of the benchmarks' W1 took 1.12 s with
    glibc's defaults and 0.87 s with these settings). With ``mmap`` off and a high trim
    threshold, freed blocks stay in the heap, as PyTorch's CPU performance guide
    recommends (it suggests jemalloc or tcmalloc for the same reason). The process's
    resident memory then stays near its peak instead of shrinking.

    Applied by the ``convlstm`` command; call it yourself at the start of a script for
    the same effect. Set ``CONVLSTM_MALLOC=0`` to skip it. Returns whether it was applied
    (only on Linux with glibc).
    """
    if os.environ.get("CONVLSTM_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    settings = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_TOP_PAD, 64 << 20))
    if not all(mallopt(param, value) == 1 for param, value in settings):
        return False
    from .nn.settings import backend

    backend.fresh_gate_bytes = sys.maxsize  # a fresh tensor is now reused heap memory
    return True


def quiet_libraries() -> None:
    """Keep the command's output to what it says itself: Lightning's start-up notes (the
    accelerator lines, the logger advert), a deprecation warning Lightning triggers
    inside PyTorch, and the ONNX exporter's note that torchvision (which no model here
    uses) is not installed are left out (``--debug`` shows them); convlstm's own
    warnings (``ConvLSTMWarning``) are one line each, without Python's file, line and
    source."""
    import logging
    import warnings

    # Lightning sets its loggers to INFO when it is imported, which the commands do only
    # when they need it (not for --help or a config error): quiet them after that.
    _after_import("lightning", _quiet_lightning)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    warnings.formatwarning = _one_line(warnings.formatwarning)


class ConvLSTMWarning(UserWarning):
    """A warning of this package about the user's data, config or machine (the
    ``convlstm`` command prints these on one line)."""


def _one_line(default: Callable[..., str]) -> Callable[..., str]:
    """``warnings.formatwarning`` that writes a ``ConvLSTMWarning`` as ``convlstm:
    warning: <message>``, and any other warning as ``default`` does (a library's
    warning raised from this package's code stays the library's)."""

    def format_warning(message, category, filename, lineno, line=None) -> str:
        if not issubclass(category, ConvLSTMWarning):
            return default(message, category, filename, lineno, line)
        text = str(message).removeprefix("convlstm: ")
        return f"convlstm: warning: {text}\n"

    return format_warning


def _quiet_lightning() -> None:
    import logging

    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _after_import(module: str, callback: Callable[[], None]) -> None:
    """Call ``callback`` now if ``module`` is imported, or else as soon as it is."""
    if module in sys.modules:
        callback()
        return
    if any(getattr(f, "callback", None) is callback for f in sys.meta_path):
        return  # already waiting for it
    import importlib.abc
    import importlib.util

    class Hook(importlib.abc.MetaPathFinder):
        def __init__(self) -> None:
            self.callback = callback

        def find_spec(self, fullname, path, target=None):
            if fullname != module:
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(fullname)
            if spec is None or spec.loader is None:
                return spec
            execute = spec.loader.exec_module

            def exec_module(mod) -> None:
                execute(mod)
                callback()

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, Hook())


#: Seconds a first-use compilation may take before it is announced on stderr.
ANNOUNCE_AFTER_S = 1.0


@contextlib.contextmanager
def announce_if_slow(what: str) -> Iterator[None]:
    """Say on stderr that ``what`` is running once it has taken ``ANNOUNCE_AFTER_S``, and
    how long it took: a first-use compilation of tens of seconds should not look like a
    hang, and one served from the cache should not print anything."""
    started = time.perf_counter()
    def announce() -> None:
        print(f"convlstm: {what} (first use; cached for later runs)...", file=sys.stderr,
              flush=True)  # fmt: skip

    timer = threading.Timer(ANNOUNCE_AFTER_S, announce)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        elapsed = time.perf_counter() - started
        if elapsed >= ANNOUNCE_AFTER_S:
            print(f"convlstm: {what} took {elapsed:.1f} s", file=sys.stderr, flush=True)
