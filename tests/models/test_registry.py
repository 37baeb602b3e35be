import pytest
from torch import nn

from convlstm.models import ClipClassifier, create_model, list_models, register_model, registry


def test_every_model_and_preset_is_listed():
    names = list_models()
    for name in (
        "clip-classifier",
        "encoder-forecaster",
        "cnn-lstm",
        "frame-classifier",
        "fish-2layer",
        "fish-1layer",
    ):
        assert name in names
    assert names == sorted(names)


def test_create_model_from_plain_config():
    model = create_model("clip-classifier", in_channels=2, hidden_channels=[3, 5], num_classes=4)
    assert isinstance(model, ClipClassifier)
    assert model.num_classes == 4


def test_unknown_name_lists_known_models():
    with pytest.raises(KeyError, match=r"unknown model 'nope'.*clip-classifier"):
        create_model("nope")


def test_unknown_config_key_is_named():
    with pytest.raises(TypeError, match=r"unknown config keys \['hiden_channels'\]"):
        create_model("clip-classifier", in_channels=1, hiden_channels=[4])
    with pytest.raises(TypeError, match="unknown config keys"):
        create_model("fish-2layer", colour=True)  # presets forward to the checked builder


def test_register_rejects_duplicate_names():
    @register_model("test-dummy")
    class Dummy(nn.Module):
        pass

    try:
        assert create_model("test-dummy").__class__ is Dummy
        with pytest.raises(ValueError, match="already registered"):
            register_model("test-dummy")(nn.Identity)
    finally:
        registry.MODELS._builders.pop("test-dummy")
