"""The fast paths: the same results as the cells' reference steps, in less time.

Everything here depends on the reference (``convlstm.nn.functional``, the cells), never
the reverse, and runs only where ``convlstm.nn.backend`` allows; a failure falls back to
the reference for that call, with a warning (``fallback``). The pieces:

* ``sequence.FusedSequence``: the ConvLSTM cell's whole-sequence fast path
  (``ConvLSTMCellNd.fast_path``), one autograd function per layer and direction;
* ``gates.FusedGates``: one LSTM gate step as one generated loop per direction with
  hand-written derivatives, used by ``pointwise.lstm_pointwise`` in a step-by-step run;
* ``step_conv.StepConv``: a step's stacked convolution with a backward that skips work;
* ``simd``: the gate loops and a weight gradient hand-written for x86 vector units,
  AVX-512 BF16 and AVX2 (``gates_simd.cpp``);
* ``pool``: memory for what a training sequence keeps, outside malloc's heap;
* ``_torch``: every private PyTorch API the above use, behind guards.

``docs/performance.md`` records what each design decision measured.
"""

from .fallback import fell_back, run_fast_path
from .pointwise import lstm_pointwise
from .pool import empty_cache
from .step_conv import step_conv

__all__ = ["empty_cache", "fell_back", "lstm_pointwise", "run_fast_path", "step_conv"]
