"""The errors a user can fix. Every face shows a ``CellprepError`` as its message alone (the CLI:
one line); any other exception is a bug and keeps its traceback."""

from __future__ import annotations


class CellprepError(Exception):
    """A problem with the user's input, files or settings; the message says what to fix."""


class SettingsError(CellprepError, ValueError):
    """A setting that cannot work (a device that is not there, a tile without stride, ...)."""


class ImageReadError(CellprepError, ValueError):
    """An image or mask file that cannot be used; the message names the file and the problem."""


class ImageLayoutError(CellprepError, ValueError):
    """An image whose axes do not fit the model (channels, planes, empty or non-numeric)."""


class LabelError(CellprepError, ValueError):
    """Labels that do not fit the image or the model (shape, values, dtype)."""


class TrainingDataError(LabelError):
    """Training data that cannot train a model; the message says what to fix."""


class CheckpointError(CellprepError, ValueError):
    """A file that is not a usable napari-cellprep checkpoint."""


class OutputExistsError(CellprepError, FileExistsError):
    """An output file that exists and may not be replaced."""


class OutputError(CellprepError, OSError):
    """An output that cannot be written (no permission, disk full, ...)."""


class CellprepWarning(UserWarning):
    """Something about the user's data that the run went on with (NaN pixels, labels that look
    painted, ...); the message says what was done and what to check."""
