"""One exception base for every failure a user can cause or meet.

The CLI renders a :class:`PixelCNNError` as a single line on stderr and exits
non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class PixelCNNError(Exception):
    """A failure with a message meant for the user (one line, no traceback)."""

    exit_code = 1


class ConfigError(PixelCNNError):
    """An option or config file is invalid."""

    exit_code = 2


class DataError(PixelCNNError):
    """A dataset is unknown, missing or unreadable."""


class CheckpointError(PixelCNNError):
    """A checkpoint is missing, corrupt, unsafe or not ours."""


class PluginError(PixelCNNError):
    """A plugin is unknown, failed to load, or broke its contract."""


class TrainingError(PixelCNNError):
    """Training cannot go on (bad numbers, unwritable run folder, ...)."""
