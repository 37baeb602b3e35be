"""The benchmark workloads and their analytic convolution FLOP counts (shared by
``run.py`` and ``worker.py``)."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Workload:
    """One ConvLSTM layer on a ``(B, T, C, H, W)`` input; stride 1, dilation 1."""

    name: str
    batch: int
    steps: int
    channels: int
    height: int
    width: int
    filters: int
    kernel: int
    padding: str  # "same" or "valid" (input path; the recurrent path is always "same")
    recurrent_activation: str
    bias: bool

    def with_steps(self, steps: int) -> Workload:
        return replace(self, steps=steps)

    def out_size(self, padding: str | None = None) -> tuple[int, int]:
        """Spatial size of the hidden state (valid padding shrinks it by ``kernel - 1``)."""
        shrink = 0 if (padding or self.padding) == "same" else self.kernel - 1
        return self.height - shrink, self.width - shrink

    def forward_flops(self, padding: str | None = None, gates: int = 4) -> int:
        """2 * MACs of the input and the recurrent convolution, summed over the steps, for
        ``gates`` gate groups (4 for the LSTM, 3 for the GRU)."""
        h, w = self.out_size(padding)
        channels = self.channels + self.filters
        macs_per_step = self.batch * h * w * gates * self.filters * channels * self.kernel**2
        return 2 * macs_per_step * self.steps

    def flops(self, mode: str, padding: str | None = None, gates: int = 4) -> int:
        """Forward FLOPs for inference; 3x (forward, input grad, weight grad) for training."""
        return self.forward_flops(padding, gates) * (3 if mode == "train" else 1)

    def describe(self) -> str:
        bias = "bias" if self.bias else "no bias"
        return (
            f"B={self.batch}, T={self.steps}, {self.channels}x{self.height}x{self.width}, "
            f"{self.filters} filters, k={self.kernel}, {self.padding}, "
            f"{self.recurrent_activation}, {bias}"
        )


WORKLOADS: dict[str, Workload] = {
    "W1": Workload("W1", 4, 30, 1, 120, 160, 16, 3, "valid", "hard_sigmoid", False),
    "W2": Workload("W2", 8, 10, 1, 64, 64, 64, 3, "same", "sigmoid", True),
}
