"""Label-free input alignment: per-volume transforms that bring the two domains' appearance together.

Registered as components of kind ``aligner`` (``none``, ``detrend``, ``spectrum_match``; plugins add more
through ``voxuda_register_aligners``) and chosen with ``[data] alignment``. The contract is
:class:`voxuda.align.base.Aligner`; where statistics come from and how runs record them: docs/data.md,
"Input alignment".
"""

from voxuda.align.api import align_volumes, aligner_from_record, alignment_record, build_aligner, is_identity
from voxuda.align.base import Aligner, Domain

__all__ = [
    "Aligner",
    "Domain",
    "align_volumes",
    "aligner_from_record",
    "alignment_record",
    "build_aligner",
    "is_identity",
]
