"""Options shared by several commands, spelled once so that every command takes them the same way.

* ``--device`` (default ``auto``: CUDA when available, else the CPU) wherever a model runs;
* ``--no-progress`` hides progress bars (``--quiet`` is a hidden alias);
* ``--out`` names what a command writes (``-o`` for short; ``--output`` is a hidden alias of older releases);
* ``--polarity`` / ``--invert``: the input's contrast, mapped to the run's training polarity
  (:mod:`voxuda.segment.polarity`).

No heavy imports here: the parser is built for ``voxuda --help``.
"""

from __future__ import annotations

import argparse

__all__ = [
    "POLARITIES",
    "add_device_argument",
    "add_output_argument",
    "add_polarity_arguments",
    "add_progress_argument",
]

#: what ``--polarity`` accepts: the protein contrast of the input (voxuda.segment.polarity uses this list;
#: it lives here so that building the parser needs no torch)
POLARITIES = ("dark", "bright", "unknown")


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when available, else CPU; the default), cpu, cuda or cuda:N")


def add_progress_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", dest="no_progress", action="store_true",
                        help="hide the progress bar")
    parser.add_argument("--quiet", dest="no_progress", action="store_true", help=argparse.SUPPRESS)


def add_output_argument(parser: argparse.ArgumentParser, metavar: str, help_text: str) -> None:
    """A required ``--out``/``-o``, with ``--output`` still accepted (hidden) for old command lines."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("-o", "--out", dest="output", metavar=metavar, help=help_text)
    group.add_argument("--output", dest="output", metavar=metavar, help=argparse.SUPPRESS)


_POLARITY_HELP = ("protein contrast of the input: dark (default: the physical convention of underfocus "
                  "tomograms), bright, or unknown (never inverted); mapped to the run's training polarity as "
                  "training did, with one line printed whenever the input is inverted")
_INVERT_HELP = "manual override: invert the input contrast once, instead of --polarity"


def add_polarity_arguments(parser: argparse.ArgumentParser, *, polarity_help: str = _POLARITY_HELP,
                           invert_help: str = _INVERT_HELP) -> None:
    """``--polarity`` (default ``None``: the command's own default) and ``--invert``; the help texts differ
    where the default does (segment: dark; evaluate: each manifest row's polarity)."""
    parser.add_argument("--polarity", choices=POLARITIES, default=None, help=polarity_help)
    parser.add_argument("--invert", action="store_true", help=invert_help)
