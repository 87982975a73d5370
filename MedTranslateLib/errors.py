"""Exceptions that carry an exit status: bad input (2) versus failure (1)."""
from __future__ import annotations


class MedTranslateError(Exception):
    """A failure the user should see as one line; `exit_code` is the CLI's exit status."""

    exit_code = 1


class InputError(MedTranslateError):
    """Bad input: a missing or unreadable file, an unsupported image, a bad argument."""

    exit_code = 2


class ModelPackageError(InputError):
    """A model package that is missing, malformed, or whose weights do not match their card."""


class TranslationCancelled(MedTranslateError):
    """The caller's cancel flag was set; nothing was written."""


class TranslationError(MedTranslateError):
    """The network produced something that must not be written (NaN or infinite values)."""
