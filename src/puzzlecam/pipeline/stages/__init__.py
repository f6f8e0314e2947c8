"""puzzlecam's stage kinds, one module per part of the pipeline, each kind defined beside
its stage function (``pipeline.kinds``). Importing this package registers them, in
pipeline order: the data, the classifiers and their CAMs, the random-walk refinement of
each CAM branch, the segmentation models."""

from puzzlecam.pipeline.kinds import register
from puzzlecam.pipeline.stages import classifier, data, refine, segmentation

__all__ = ["KINDS"]

KINDS = (*data.KINDS, *classifier.KINDS, *refine.KINDS, *segmentation.KINDS)
"""puzzlecam's own kinds, in the order their stages run."""

for _kind in KINDS:
    register(_kind)
