"""Backbones and the segmenter without the network: a failed hub download is one
ConfigError that says how to train offline."""

import pytest
import timm
from huggingface_hub.errors import LocalEntryNotFoundError

from puzzlecam.errors import ConfigError
from puzzlecam.models.backbone import BackboneConfig, create_backbone
from puzzlecam.models.segmenter import Segmenter


@pytest.fixture
def offline(monkeypatch):
    """timm.create_model fails at once for pretrained weights, as the hub does offline."""
    real = timm.create_model

    def create(*args, pretrained=False, **kwargs):
        if pretrained:
            raise LocalEntryNotFoundError(
                "An error happened while trying to locate the file on the Hub and we cannot "
                "find the requested files in the local cache."
            )
        return real(*args, pretrained=pretrained, **kwargs)

    monkeypatch.setattr(timm, "create_model", create)


def _check(message: str) -> None:
    assert "\n" not in message
    assert "resnet18, pretrained: timm" in message and "could not be downloaded" in message
    assert "pretrained: /path/to/weights.safetensors" in message
    assert "tf_efficientnet_lite0" in message and "efficientnet-lite0-package" in message


def test_offline_timm_weights_say_how_to_use_a_local_file(offline):
    with pytest.raises(ConfigError) as caught:
        create_backbone(BackboneConfig(name="resnet18", pretrained="timm"))
    _check(str(caught.value))


def test_offline_segmenter_weights_say_the_same(offline):
    with pytest.raises(ConfigError) as caught:
        Segmenter(BackboneConfig(name="resnet18", pretrained="timm"), 3)
    _check(str(caught.value))


def test_without_pretrained_weights_nothing_is_downloaded(offline):
    create_backbone(BackboneConfig(name="test_efficientnet", pretrained="none"))
