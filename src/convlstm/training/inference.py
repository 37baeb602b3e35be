"""A trained model with its preprocessing and output transform: what predict and export run."""

from __future__ import annotations

import torch
from torch import nn

from .run_folder import ModelSpec
from .tasks import class_probabilities


class Predictor(nn.Module):
    """Frames in the units of the training files in, probabilities or forecasts out.

    ``forward`` applies the run's preprocessing steps (normalisation, time channels,
    NaN filling), the model, and the output transform: sigmoid (binary: ``(B,)``
    probability of class 1), softmax (``(B, K)``), or for forecasts the inverse of the
    normalisation (``(B, T_out, C, H, W)`` in the data's units). With ``logits=True`` a
    classifier returns its raw outputs instead. Tensor in, tensor out: exportable.

    Shapes: ``x`` is ``(B, T * k, C, H, W)`` float32, where ``k`` is the number of file
    frames per model step (``spec.preprocessing.frames_per_step``, 1 unless time channels
    were stacked); 8-bit frames are turned into floats by
    ``spec.preprocessing.to_float`` before this.
    """

    def __init__(self, model: nn.Module, spec: ModelSpec, logits: bool = False) -> None:
        super().__init__()
        self.model, self.spec, self.logits = model, spec, logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preprocessing = self.spec.preprocessing
        out = self.model(preprocessing(x))
        if self.spec.transform == "denormalize":
            return preprocessing.invert(out)
        return out if self.logits else class_probabilities(out)
