"""Name -> loss class registry, so configs can say ``loss: {name: bce}``.

    >>> from convlstm.losses import create_loss
    >>> loss = create_loss("focal", gamma=1.0)
"""

from __future__ import annotations

from torch import nn

from ..registry import Registry

LOSSES: Registry[type[nn.Module]] = Registry("loss")

#: Class decorator registering a loss under a name (its class name works too).
register_loss = LOSSES.register
#: Registered loss names, sorted.
list_losses = LOSSES.names
#: The class registered under a name (or with that class name, any case).
get_loss_class = LOSSES.get
#: Build a registered loss from plain config values (unknown keys are named).
create_loss = LOSSES.create
