"""Whole-tomogram segmentation: sliding windows, streaming slab output, training-matched preprocessing.

``segment_tomogram(model_or_run, input_path, output_path, ...)`` is the entry point (``voxuda segment`` on
the command line); see docs/segment.md.
"""

from voxuda.segment.api import SegmentOptions, SegmentResult, segment_tomogram
from voxuda.segment.errors import SegmentError
from voxuda.segment.model import LoadedModel, load_model

__all__ = ["segment_tomogram", "SegmentOptions", "SegmentResult", "SegmentError", "LoadedModel", "load_model"]
