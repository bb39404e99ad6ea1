"""The data module's errors: every one is a :class:`DataError` (a ``RuntimeError``)."""

from __future__ import annotations

__all__ = ["DataError", "FetchError", "VerificationError"]


class DataError(RuntimeError):
    """Base class of the data module's errors."""


class FetchError(DataError):
    """An external client (npm, apt-get, pip) is missing, failed or timed out."""


class VerificationError(DataError):
    """Files are present but are not the expected data set (wrong count, size or format)."""
