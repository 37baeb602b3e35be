"""Model registry: every model and preset has a name that configs can use.

    >>> from convlstm.models import create_model, list_models
    >>> model = create_model("clip-classifier", in_channels=1, hidden_channels=[8, 16])
    >>> "fish-2layer" in list_models()
    True
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")

#: Decorator registering a model class or preset function under a name; ``create_model``
#: calls it as ``builder(**config)``.
register_model = MODELS.register
#: Sorted names of every registered model and preset.
list_models = MODELS.names
#: The class or function registered under a name.
get_model_builder = MODELS.get
#: Build a registered model from plain config values (unknown keys are named).
create_model = MODELS.create
