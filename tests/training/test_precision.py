"""``trainer.precision``: ``auto`` takes bfloat16 only where the hardware computes it
natively, and an explicit bfloat16 on a CPU without it is said to be slow."""

import warnings

import pytest
import torch

from convlstm.training import trainer
from convlstm.training.config import load_config, resolve_config


@pytest.fixture
def cpu_without_bf16(monkeypatch):
    monkeypatch.setattr(trainer, "cpu_vector_isa", lambda: "avx2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def cpu_with_bf16(monkeypatch):
    monkeypatch.setattr(trainer, "cpu_vector_isa", lambda: "avx512")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_auto_is_bfloat16_on_a_cpu_with_avx512_bf16(cpu_with_bf16):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert trainer.resolve_precision("auto", "auto") == "bf16-mixed"
        assert trainer.resolve_precision("auto", "cpu") == "bf16-mixed"
        assert trainer.resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"


def test_auto_is_float32_on_a_cpu_without_it(cpu_without_bf16):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert trainer.resolve_precision("auto", "auto") == "32-true"
        assert trainer.resolve_precision("32-true", "cpu") == "32-true"


@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-true", "bf16"])
def test_an_explicit_bfloat16_on_such_a_cpu_is_kept_and_said_to_be_slow(
    cpu_without_bf16, precision
):
    with pytest.warns(UserWarning, match=r"trainer.precision .* slower than '32-true'") as caught:
        assert trainer.resolve_precision(precision, "auto") == precision
    assert len(caught) == 1 and "\n" not in str(caught[0].message)


def test_auto_on_a_cuda_device_follows_its_bfloat16_support(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert trainer.resolve_precision("auto", "auto") == "bf16-mixed"
    assert trainer.resolve_precision("auto", "gpu") == "bf16-mixed"
    monkeypatch.setattr(trainer, "cpu_vector_isa", lambda: "avx2")
    assert trainer.resolve_precision("auto", "cpu") == "32-true"  # the CPU was asked for
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert trainer.resolve_precision("auto", "auto") == "32-true"


def test_the_trainer_gets_the_resolved_precision(cpu_without_bf16, tmp_path):
    """The bundled video config asks for ``auto``: on a CPU without AVX-512 BF16 its
    Lightning trainer runs float32 (it asked for bf16-mixed before, 4-5x slower there)."""
    config = load_config(resolve_config("video_folder"))
    assert config.trainer.precision == "auto"
    built = trainer.build_trainer(config, tmp_path, logger=False)
    assert built.precision == "32-true"
