"""puzzlecam: weakly-supervised semantic segmentation with Puzzle-CAM and random-walk refinement."""

__version__ = "0.1.0"
