"""Exception hierarchy of nacrith.

``NacrithError`` is the root; the CLI turns any of them into a one-line message and exit code 1.
Bad arguments raise the built-in ``ValueError``/``TypeError`` as in the standard library.
"""

from __future__ import annotations


class NacrithError(Exception):
    """Base class of every error nacrith raises on purpose."""


class FormatError(NacrithError):
    """The input is not a valid nacrith stream (bad magic, reserved bits, bad field values)."""


class TruncatedError(FormatError, EOFError):
    """The stream ends before the structure it declares is complete."""


class ChecksumError(FormatError):
    """Decoded bytes do not match the checksum stored in the stream."""


class ModelMismatchError(NacrithError):
    """The stream was made with a different model (GGUF sha256) or numeric backend."""


class ModelNotFoundError(NacrithError):
    """No GGUF model file could be located."""


class BackendError(NacrithError):
    """llama.cpp failed (load, context creation, decode). ``code`` is its return code, if any."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code
