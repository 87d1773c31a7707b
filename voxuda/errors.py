"""Exception types whose messages are meant for users, not developers.

The CLI prints any ``VoxudaError`` as one line and exits non-zero, so every message must already name the
file, key or component at fault and say what to do about it. ``exit_code`` tells the CLI which kind of
failure it is: 2 for a usage error (a bad option, config value or input file), 1 for a runtime error (the
environment: a folder in use, no memory, a full disk).
"""

from __future__ import annotations


class VoxudaError(Exception):
    """Base class of errors caused by the user's input, configuration or environment."""

    #: the CLI's exit status for this error: 2 = usage error (fix the command or its input), 1 = runtime error
    exit_code: int = 2


class ConfigError(VoxudaError, ValueError):
    """A configuration value, key or file is wrong."""


class UnknownComponentError(VoxudaError, KeyError):
    """A component name resolves to nothing registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class AmbiguousComponentError(VoxudaError, LookupError):
    """A bare name is claimed by more than one plugin; a qualified ``plugin:name`` is needed."""


class PluginError(VoxudaError, RuntimeError):
    """A plugin failed to load or registered something it may not."""

