"""nacrith: neural lossless compression with a small GGUF transformer through llama.cpp.

One-shot use::

    import nacrith
    blob = nacrith.compress(b"some text")
    assert nacrith.decompress(blob) == b"some text"

A ``Session`` holds the loaded model; pass one to reuse it across calls.
"""

__version__ = "0.1.0"

from .codec import Options, Session  # noqa: E402
from .errors import (BackendError, ChecksumError, FormatError, ModelMismatchError,  # noqa: E402
                     ModelNotFoundError, NacrithError, TruncatedError)
from .lanes import Window  # noqa: E402
from . import codec as _codec  # noqa: E402

_default_sessions: dict = {}


def _session(model, session):
    if session is not None:
        return session
    key = None if model is None else str(model)
    if key not in _default_sessions:
        _default_sessions[key] = Session(model)
    return _default_sessions[key]


def compress(data: bytes, *, model=None, session: Session | None = None, **options) -> bytes:
    """Compress ``data`` (bytes-like) into a nacrith stream.

    Args:
        model: GGUF path (default: ``NACRITH_MODEL`` or the embedded SmolLM2-135M).
        session: a ``Session`` to reuse (its model wins over ``model``).
        **options: fields of ``Options`` (window, frame_size, max_lanes, min_lane_tokens, batch).

    Raises:
        ModelNotFoundError, BackendError; ValueError for bad options.
    """
    return _codec.compress(bytes(data), _session(model, session), Options(**options))


def decompress(data: bytes, *, model=None, session: Session | None = None) -> bytes:
    """Decompress a nacrith stream; every checksum is verified.

    Raises:
        FormatError, TruncatedError, ChecksumError, ModelMismatchError.
    """
    return _codec.decompress(bytes(data), _session(model, session))


__all__ = ["compress", "decompress", "Options", "Session", "Window", "NacrithError", "FormatError",
           "TruncatedError", "ChecksumError", "ModelMismatchError", "ModelNotFoundError",
           "BackendError", "__version__"]
