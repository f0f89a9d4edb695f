"""Exceptions raised by fewmm.

Every error fewmm raises on bad input derives from :class:`FewmmError` and names the file,
item or argument at fault and what was expected.
"""


class FewmmError(Exception):
    """Base class of all fewmm errors."""


class DataError(FewmmError, ValueError):
    """A data set, manifest or data file is missing, unreadable or malformed."""


class DataWarning(UserWarning):
    """A data file was read, but something in it was changed or looks wrong (e.g. float audio
    samples beyond [-1, 1] that were clipped); the message names the file."""


class PluginError(FewmmError, ImportError):
    """A plugin named with ``--plugin`` cannot be imported (not found, or its import failed)."""


class PluginWarning(UserWarning):
    """An installed entry-point plugin could not be loaded or clashes with a registered name; it
    is skipped, and asking for its name gives the reason."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A data set's files are not in the data root and could not be downloaded."""


class UnknownNameError(FewmmError, KeyError):
    """A registry lookup (data set, encoder, method) got a name it does not know."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class EpisodeError(FewmmError, ValueError):
    """Episodes cannot be sampled as asked (e.g. a class has fewer than K+Q items)."""


class FeatureError(FewmmError, ValueError):
    """Features given to a method are malformed (wrong shape, NaN/inf, label mismatch)."""


class MethodError(FewmmError, ValueError):
    """A method's output is unusable: ``_logits`` / ``episode_logits`` returned something other
    than a float tensor of the documented shape, or NaN/inf scores (e.g. squared distances of
    features ~1e18 overflow float32). The message names the method."""


class CacheError(FewmmError):
    """A feature cache file is corrupt or does not match its key."""


class EncoderError(FewmmError, RuntimeError):
    """An encoder cannot be built or loaded (missing weights, unreachable hub id)."""


class CheckpointError(FeatureError):
    """A checkpoint does not match the model, the features or the training configuration, or
    cannot be read (truncated, garbled, or written by an older fewmm that cannot be resumed);
    a :class:`FeatureError`, hence a ``ValueError``."""
