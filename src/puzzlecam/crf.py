"""Dense CRF (pydensecrf2, an optional extra) with the reference's kernel settings."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["crf_available", "crf_iterations", "crf_refine_labels", "crf_refine_probs"]


def crf_available() -> bool:
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        return False
    return True


def crf_iterations(iterations: int, where: str, report: Callable[[str], None]) -> int:
    """The CRF iterations to run: ``iterations``, or 0 when pydensecrf2 is missing, which
    ``report`` is told once (a log line, a warning), naming ``where``. The CRF is an
    optional extra: without it every stage runs, without CRF, instead of failing."""
    if iterations <= 0 or crf_available():
        return max(iterations, 0)
    report(f"{where}: pydensecrf2 is not installed, CRF skipped (pip install 'puzzlecam[crf]')")
    return 0


def _require():
    try:
        import pydensecrf.densecrf as dcrf
        from pydensecrf import utils
    except ImportError as error:
        raise ImportError("dense CRF needs pydensecrf2: pip install 'puzzlecam[crf]'") from error
    return dcrf, utils


def crf_refine_labels(
    image: np.ndarray, labels: np.ndarray, num_labels: int, iterations: int, gt_prob: float = 0.7
) -> np.ndarray:
    """Refine a hard label map. image (H, W, 3) uint8, labels (H, W) in [0, num_labels)
    -> (H, W) int64. Kernels as the reference's label CRF (Gaussian sxy 3, compat 3;
    bilateral sxy 50, srgb 5, compat 10)."""
    if num_labels < 2 or iterations <= 0:
        return labels.astype(np.int64)
    dcrf, utils = _require()
    height, width = labels.shape
    crf = dcrf.DenseCRF2D(width, height, num_labels)
    crf.setUnaryEnergy(
        utils.unary_from_labels(labels, num_labels, gt_prob=gt_prob, zero_unsure=False)
    )
    crf.addPairwiseGaussian(sxy=3, compat=3)
    crf.addPairwiseBilateral(
        sxy=50, srgb=5, rgbim=np.array(image, dtype=np.uint8, order="C"), compat=10
    )
    q = np.array(crf.inference(iterations)).reshape(num_labels, height, width)
    return q.argmax(axis=0)


def crf_refine_probs(image: np.ndarray, probs: np.ndarray, iterations: int) -> np.ndarray:
    """Refine class probabilities. image (H, W, 3) uint8, probs (K, H, W) summing to 1
    -> (K, H, W). Kernels as the reference's (Gaussian sxy 3, compat 3; bilateral sxy 80,
    srgb 13, compat 10)."""
    if iterations <= 0:
        return probs
    dcrf, utils = _require()
    classes, height, width = probs.shape
    crf = dcrf.DenseCRF2D(width, height, classes)
    crf.setUnaryEnergy(np.ascontiguousarray(utils.unary_from_softmax(probs.astype(np.float32))))
    crf.addPairwiseGaussian(sxy=3, compat=3)
    crf.addPairwiseBilateral(
        sxy=80, srgb=13, rgbim=np.array(image, dtype=np.uint8, order="C"), compat=10
    )
    return np.array(crf.inference(iterations)).reshape(classes, height, width)
