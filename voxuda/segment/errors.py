"""The one error type of whole-tomogram segmentation.

It is a :class:`~voxuda.errors.VoxudaError` (the CLI prints it as one line and exits 2) and a
:class:`ValueError` (library callers that already catch bad values keep working).
"""

from __future__ import annotations

from voxuda.errors import VoxudaError


class SegmentError(VoxudaError, ValueError):
    """A tomogram, model or output path that segmentation cannot use; the message says what to do."""
