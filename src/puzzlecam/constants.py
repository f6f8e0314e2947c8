"""Constants defined once for the whole package."""

IGNORE_INDEX = 255
"""Label value that marks pixels excluded from losses and metrics (VOC convention)."""

BACKGROUND = "background"
"""Name of label 0 in every mask; class lists never include it."""

AFFINITY_STRIDE = 4
"""Stride of the random walk's grid: AffinityNet's boundary map is made at the backbone stage
of this reduction, and the CAMs stored for the walk (``scores_stride4``) are at it too."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle",
    "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person",
    "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
