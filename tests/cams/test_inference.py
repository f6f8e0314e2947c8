import torch

from puzzlecam.cams.inference import (
    multiscale_cams,
    normalize_cams,
    scales_and_flips,
    strided_size,
)
from puzzlecam.models.affinitynet import AffinityNet
from puzzlecam.models.backbone import BackboneConfig
from puzzlecam.models.classifier import CamClassifier


def test_normalize_cams_divides_each_map_by_its_max():
    cams = torch.tensor([[[0.0, 2.0], [1.0, 4.0]], [[0.5, 0.25], [0.0, 0.0]]])
    before = cams.clone()
    out = normalize_cams(cams)
    expected = torch.tensor([[[0.0, 0.5], [0.25, 1.0]], [[1.0, 0.5], [0.0, 0.0]]])
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=0)
    assert out.max() < 1.0  # the epsilon keeps it strictly below 1
    torch.testing.assert_close(cams, before)
    zero = normalize_cams(torch.zeros(1, 2, 2))
    assert torch.isfinite(zero).all() and zero.abs().max() == 0


def test_strided_size():
    assert strided_size((500, 375), 4) == (125, 94)
    assert strided_size((512, 512), 16) == (32, 32)
    assert strided_size((1, 1), 4) == (1, 1)


def test_multiscale_cams_shapes_and_flip_symmetry():
    torch.manual_seed(0)
    model = CamClassifier(BackboneConfig("test_efficientnet", "none", "fix"), 3).eval()
    assert model.stride == 16  # from the backbone's feature_info
    images = torch.randint(0, 255, (2, 3, 37, 50), dtype=torch.uint8)
    full, small = multiscale_cams(model, images, (0.5, 1.0), flip=True)
    assert full.shape == (2, 3, 37, 50) and small.shape == (2, 3, 10, 13)
    assert (full >= 0).all() and (small >= 0).all()  # ReLU before the sum
    # with flips added, a mirrored image gives the mirrored maps (on sizes the stride-16
    # grid covers exactly; otherwise the grid's bottom/right crop breaks the symmetry)
    square = torch.randint(0, 255, (1, 3, 32, 48), dtype=torch.uint8)
    mirrored, _ = multiscale_cams(model, square.flip(-1), (1.0,), flip=True)
    straight, _ = multiscale_cams(model, square, (1.0,), flip=True)
    torch.testing.assert_close(mirrored, straight.flip(-1), atol=1e-4, rtol=1e-4)


def test_scales_and_flips_adds_the_mirrors_maps_flipped_back():
    images = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    shapes = []

    def first_channel(batch):  # maps that are the images themselves: easy to check
        shapes.append(tuple(batch.shape))
        return batch[:, :1]

    flipped = list(scales_and_flips(first_channel, images, (1.0, 0.5), flip=True))
    assert shapes == [(4, 3, 4, 6), (4, 3, 2, 3)]  # images and mirrors in one batch
    torch.testing.assert_close(flipped[0], 2 * images[:, :1])  # the mirror's, flipped back
    assert flipped[1].shape == (2, 1, 2, 3)
    (plain,) = scales_and_flips(first_channel, images, (1.0,), flip=False)
    torch.testing.assert_close(plain, images[:, :1])


def test_strides_come_from_the_backbones():
    backbone = BackboneConfig("test_efficientnet", "none", "fix", output_stride=8)
    assert CamClassifier(backbone, 2).stride == 8
    assert AffinityNet(BackboneConfig("test_efficientnet", "none", "fix")).stride == 4
