"""Errors the plugin raises for bad input: each says what is wrong and how to fix it.

The CLI prints these as one clean message (no traceback) and exits with status 2.
"""


class RecboleQuantError(Exception):
    """Base class: an input problem the user can fix."""


class UnknownModelError(RecboleQuantError, ValueError):
    """A model name that is neither a plugin model nor a RecBole model."""


class UnknownOptionError(RecboleQuantError, KeyError):
    """A ``--key=value`` override that no part of the configuration knows."""

    def __str__(self):  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


class ConfigValueError(RecboleQuantError, ValueError):
    """A known option with an impossible value (e.g. ``bits=9``)."""


class ConfigFileError(RecboleQuantError, ValueError):
    """A config file that is missing or not a yaml mapping; names the file and line."""


class DatasetNotFoundError(RecboleQuantError, FileNotFoundError):
    """The dataset's atomic files are not on disk (and nothing is downloaded)."""


class MalformedDatasetError(RecboleQuantError, ValueError):
    """A dataset or split file that cannot be parsed; names the file and line."""


class CheckpointError(RecboleQuantError, ValueError):
    """A checkpoint or export file that is missing, damaged or of another model."""


class TrainingDivergedError(RecboleQuantError, FloatingPointError):
    """The training loss became NaN or infinite."""


class ExportError(RecboleQuantError, ValueError):
    """An export that cannot be written or read: a model without packed codes, a missing,
    truncated or tampered export file, faiss missing for the hand-off."""


class QueryError(RecboleQuantError, ValueError):
    """A recommendation request an export cannot answer: unknown user token, impossible k."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says where the best checkpoint is and how to
    resume it. A ``KeyboardInterrupt`` (not a :class:`RecboleQuantError`), so a comparison
    stops as a whole instead of recording it as one failed model."""
