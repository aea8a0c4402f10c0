"""nacrith: neural lossless compression with a small GGUF transformer through llama.cpp.

One-shot use::

    import nacrith
    blob = nacrith.compress(b"some text")
    assert nacrith.decompress(blob) == b"some text"

Incremental and file APIs follow the standard library's ``lzma``: ``NacrithCompressor``,
``NacrithDecompressor``, ``nacrith.open``. A ``Session`` holds the loaded model (and worker
processes); pass ``session=`` to reuse one, otherwise one shared session per model path is used.

Names are imported on first use (PEP 562), so the pure layers (``nacrith.format``,
``nacrith.params``, ``nacrith.options``) import without numpy, llama.cpp or the native module.

Layers, every import pointing down (``tests/test_layers.py`` walks them):

* pure: ``errors``, ``params`` (recorded settings and their definitions), ``format`` (the stream
  format: wire, header and params, frames, the parser of concatenated streams, the writer),
  ``options`` (``Options``, levels, execution switches);
* the predictor: ``model`` (llama.cpp), ``backend`` (fingerprint), ``lanes`` (evaluation
  schedules), ``probe`` (is batching exact for this model?), ``ensemble``, ``coder``
  (``native/``), ``segment``, ``binary``, ``lzma2``;
* ``engine`` (model, contexts, params, checks), ``executors`` and ``scheduler`` (where frames
  run; they know nothing of the codec);
* the codec: ``llm_frame``, ``encoder``, ``decoder``; ``session`` (Engine + executors),
  ``policy`` (size guard), ``stream`` (file API); ``cli`` (command line) on top.

Data flow: bytes -> ``segment`` (text/binary runs, tokens) -> ``lanes`` (llama.cpp logits) ->
``ensemble`` (heads, CDF) -> ``coder`` -> frames (``llm_frame``, ``binary``) -> ``encoder`` /
``decoder`` -> ``format``.
"""

from ._version import __version__

_LAZY = {
    "Options": "options", "Session": "session", "LLM_ONLY": "params", "EnsembleParams": "params",
    "Window": "params", "Model": "model", "NacrithCompressor": "stream", "NacrithDecompressor": "stream",
    "NacrithFile": "stream", "get_session": "stream", "open": "stream",
    **{name: "errors" for name in ("BackendError", "ChecksumError", "FormatError", "ModelMismatchError",
                                   "ModelNotFoundError", "NacrithError", "TruncatedError")},
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nacrith' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def compress(data, *, model=None, session=None, **options) -> bytes:
    """Compress ``data`` (bytes-like) into a nacrith stream.

    Args:
        model: GGUF path (default: ``NACRITH_MODEL`` or the embedded SmolLM2-135M).
        session: a ``Session`` to reuse (wins over ``model``).
        **options: ``level`` (1 fastest .. 9 best ratio, default 6: ``Options.from_level``) and
            fields of ``Options`` that replace the level's: window (``Window``), ensemble (``EnsembleParams``),
            frame_size (bytes), max_lanes, min_lane_tokens (tokens), batch (tokens), info (record
            the model name and writer).

    Returns:
        the compressed stream (bytes); the same bytes as ``NacrithCompressor`` gives.

    Raises:
        ModelNotFoundError, BackendError; ValueError for bad option values or a closed session;
        TypeError for data that is not bytes-like or options of the wrong type.
    """
    from . import policy
    from .options import Options
    from .stream import get_session

    data = memoryview(data).cast("B")  # bytes-like only: TypeError otherwise, as lzma
    return policy.compress(bytes(data), get_session(model, session), Options.from_level(**options))


def decompress(data, *, model=None, session=None) -> bytes:
    """Decompress a nacrith stream; every checksum is verified.

    Raises:
        FormatError, TruncatedError, ChecksumError, ModelMismatchError.
    """
    from . import decoder
    from .stream import get_session

    data = memoryview(data).cast("B")
    return decoder.decompress(bytes(data), get_session(model, session))


__all__ = ["compress", "decompress", "open", "NacrithCompressor", "NacrithDecompressor", "NacrithFile",
           "Options", "Session", "Model", "Window", "EnsembleParams", "LLM_ONLY", "NacrithError",
           "FormatError", "TruncatedError", "ChecksumError", "ModelMismatchError", "ModelNotFoundError",
           "BackendError", "__version__"]
