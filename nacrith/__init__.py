"""nacrith: neural lossless compression with a small GGUF transformer through llama.cpp.

One-shot use::

    import nacrith
    blob = nacrith.compress(b"some text")
    assert nacrith.decompress(blob) == b"some text"

Incremental and file APIs follow the standard library's ``lzma``: ``NacrithCompressor``,
``NacrithDecompressor``, ``nacrith.open``. A ``Session`` holds the loaded model (and worker
processes); pass ``session=`` to reuse one, otherwise one shared session per model path is used.
"""

__version__ = "0.1.0"

from . import codec as _codec  # noqa: E402
from .codec import Options, Session  # noqa: E402
from .ensemble import LLM_ONLY, EnsembleParams  # noqa: E402
from .errors import (BackendError, ChecksumError, FormatError, ModelMismatchError,  # noqa: E402
                     ModelNotFoundError, NacrithError, TruncatedError)
from .lanes import Window  # noqa: E402
from .model import Model  # noqa: E402
from .stream import NacrithCompressor, NacrithDecompressor, NacrithFile, get_session, open  # noqa: E402


def compress(data, *, model=None, session: Session | None = None, **options) -> bytes:
    """Compress ``data`` (bytes-like) into a nacrith stream.

    Args:
        model: GGUF path (default: ``NACRITH_MODEL`` or the embedded SmolLM2-135M).
        session: a ``Session`` to reuse (wins over ``model``).
        **options: fields of ``Options``: window (``Window``), ensemble (``EnsembleParams``),
            frame_size (bytes), max_lanes, min_lane_tokens (tokens), batch (tokens).

    Returns:
        the compressed stream (bytes).

    Raises:
        ModelNotFoundError, BackendError; ValueError for bad options.
    """
    return _codec.compress(bytes(data), get_session(model, session), Options(**options))


def decompress(data, *, model=None, session: Session | None = None) -> bytes:
    """Decompress a nacrith stream; every checksum is verified.

    Raises:
        FormatError, TruncatedError, ChecksumError, ModelMismatchError.
    """
    return _codec.decompress(bytes(data), get_session(model, session))


__all__ = ["compress", "decompress", "open", "NacrithCompressor", "NacrithDecompressor", "NacrithFile",
           "Options", "Session", "Model", "Window", "EnsembleParams", "LLM_ONLY", "NacrithError",
           "FormatError", "TruncatedError", "ChecksumError", "ModelMismatchError", "ModelNotFoundError",
           "BackendError", "__version__"]
