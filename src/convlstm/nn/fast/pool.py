"""Memory for what a training sequence keeps until its backward, outside malloc's heap."""

from __future__ import annotations

import math
import mmap
import sys
import threading

import torch

from ..settings import backend


class MappedPool:
    """Memory for the large tensors a training step keeps until its backward (every
    step's gates and cell, and the output), mapped from the OS apart from malloc's heap
    and reused once no tensor uses it.

    Taken from the heap, these blocks leave holes that the heap's small, long-lived
    allocations split, and with glibc the resident memory grows from one training step
    to the next. Unmapped after every step instead, they are page-faulted afresh each
    time. So, like PyTorch's CUDA caching allocator, the pool keeps free mappings for
    requests of the same size, and unmaps free ones only when they outgrow the largest
    working set seen (or on ``empty_cache``). Tensors under ``backend.mapped_min_bytes``
    stay in the heap.
    """

    def __init__(self) -> None:
        self._maps: list[mmap.mmap] = []
        self._unused = [object()]  # referenced as a free mapping is, by nothing else
        self._lock = threading.Lock()
        self._peak = 0  # the most bytes in use at once

    def _free(self) -> list[mmap.mmap]:
        # Each tensor made from a mapping holds one reference to it until its storage is
        # freed; a free mapping has as many as an object held only by a list.
        counts = [sys.getrefcount(m) for m in [*self._unused, *self._maps]]
        return [m for m, n in zip(self._maps, counts[1:]) if n <= counts[0]]

    def empty(self, shape, strides, dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised CPU tensor of ``shape`` and ``strides`` (from the heap where
        the OS has no anonymous mappings, e.g. Windows)."""
        if not ANONYMOUS_MAPPINGS:
            return torch.empty_strided(shape, strides, dtype=dtype)
        count = _storage_size(shape, strides)
        nbytes = count * dtype.itemsize
        with self._lock:
            free = self._free()
            memory = next((m for m in free if len(m) == nbytes), None)
            if memory is None:
                # Ordinary pages: asked for transparent huge pages, the first touch of
                # this memory, a first training step's, took up to 5x longer on the VM
                # measured, and later steps were no faster (docs/performance.md).
                memory = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
                self._maps.append(memory)
                free_bytes = sum(len(m) for m in free)
                self._peak = max(self._peak, sum(len(m) for m in self._maps) - free_bytes)
                # Free mappings may be asked for later in the same step, so they go only
                # when they outgrow the largest working set (oldest first).
                while free and free_bytes > self._peak:
                    free_bytes -= len(free[0])
                    self._release([free.pop(0)])
        storage = torch.frombuffer(memory, dtype=dtype, count=count).untyped_storage()
        return torch.empty(0, dtype=dtype).set_(storage, 0, shape, strides)  # not a view

    def _release(self, free: list[mmap.mmap]) -> None:
        for memory in free:
            self._maps.remove(memory)
            memory.close()

    def empty_cache(self) -> int:
        """Unmap every free mapping; returns the bytes released."""
        with self._lock:
            free = self._free()
            released = sum(len(m) for m in free)
            self._release(free)
        return released

    def held(self) -> int:
        """Bytes mapped, in use or free."""
        with self._lock:
            return sum(len(m) for m in self._maps)


#: POSIX systems map anonymous memory; elsewhere the pool hands out heap tensors.
ANONYMOUS_MAPPINGS = hasattr(mmap, "MAP_ANONYMOUS") and hasattr(mmap, "MAP_PRIVATE")

mapped_pool = MappedPool()


def empty_cache() -> int:
    """Unmap the memory that training layers keep for reuse and no tensor uses now (see
    ``MappedPool``); returns the bytes released. Like ``torch.cuda.empty_cache``."""
    return mapped_pool.empty_cache()


def _empty(shape, strides, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Uninitialised memory for a kept training tensor: from ``mapped_pool`` on a CPU."""
    count = _storage_size(shape, strides)
    # Smaller kept tensors come from the heap: a mapping each would cost more than the
    # holes they leave.
    if device.type != "cpu" or count * dtype.itemsize < backend.mapped_min_bytes:
        return torch.empty_strided(shape, strides, dtype=dtype, device=device)
    return mapped_pool.empty(shape, strides, dtype)


def _storage_size(shape, strides) -> int:
    """Elements a tensor of ``shape`` and ``strides`` spans (0 when it is empty)."""
    return 1 + sum((n - 1) * s for n, s in zip(shape, strides)) if all(shape) else 0


def _step_block(shape, dtype, device, layout, steps: int) -> torch.Tensor:
    """``_empty`` of ``(steps, *shape)``, each step dense in ``layout``."""
    strides = torch.empty(shape, dtype=dtype, device="meta", memory_format=layout).stride()
    return _empty((steps, *shape), (math.prod(shape), *strides), dtype, device)
