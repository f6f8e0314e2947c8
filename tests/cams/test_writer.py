import numpy as np
import torch
from PIL import Image

from puzzlecam.cams.scores import load_scores
from puzzlecam.cams.writer import write_cams
from puzzlecam.data.samples import Sample
from puzzlecam.models.backbone import BackboneConfig
from puzzlecam.models.classifier import CamClassifier


def _samples(folder):
    rng = np.random.default_rng(0)
    samples = []
    for index, tags in enumerate([(0, 2), (1, 2), (2,)]):
        path = folder / f"im{index}.png"
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(path)
        samples.append(Sample(f"im{index}", path, tags=tags))
    return samples


def test_channels_last_writes_the_same_cams(tmp_path):
    torch.manual_seed(0)
    model = CamClassifier(BackboneConfig("test_efficientnet", "none", "fix"), 3).eval()
    samples = _samples(tmp_path)
    written = {}
    for layout in (False, True):
        out = tmp_path / f"cams_{layout}"
        count = write_cams(
            model, samples, out, (0.5, 1.0), batch_size=2, num_workers=0,
            channels_last=layout, progress=False,
        )  # fmt: skip
        assert count == len(samples)
        written[layout] = [load_scores(out / f"{s.image_id}.npz") for s in samples]
    stem = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert stem.weight.is_contiguous(memory_format=torch.channels_last)  # the last pass's
    # the layout changes float rounding only
    for plain, fast in zip(written[False], written[True], strict=True):
        np.testing.assert_array_equal(plain.keys, fast.keys)
        np.testing.assert_allclose(plain.scores, fast.scores, atol=2e-3)
        np.testing.assert_allclose(plain.scores_stride4, fast.scores_stride4, atol=2e-3)
        np.testing.assert_allclose(plain.class_probs, fast.class_probs, atol=1e-5)
        assert plain.scores.max() > 0.99  # max-normalised maps, not all zero
