"""The nacrith stream format (``codec/FORMAT.md`` is normative), pure: parsing and writing need no
numpy, llama.cpp or native import.

* ``wire``: constants and caps, frame types, varints, checks and checksums.
* ``header``: the stream header, ``LLMParams`` (the params block and params frame), presets.
* ``frames``: data, seek table and end frames, the LLM payload's lane table.
* ``parser``: ``StreamParser``, the one reader of the stream grammar, and ``Streams``, which owns
  concatenation and trailing data.
* ``writer``: ``build_stream`` (tests, vectors, fuzzing).

Encoders write format version 2; version 1 streams are still read. Every length is checked
against the bytes that remain and against caps before anything is allocated.
"""

from .frames import (EndFrame, Frame, SeekEntry, SeekTable, read_end, read_frame, read_llm_payload,
                     read_seek_table, write_end, write_end_v1, write_frame, write_llm_payload, write_seek_table)
from .header import (BACKEND_PRESETS, ENSEMBLE_WIRE_FIELDS, MODEL_PRESETS, LLMParams, StreamHeader, encode_ensemble, read_ensemble, read_header,
                     read_params)
from .parser import Index, StreamParser, Streams, iter_frames, trailing_error
from .wire import (CHECK_SIZE, DATA_FRAMES, DESC_PARAMS, END_FRAME, END_FRAME_V2, END_MAGIC, FRAME_END, FRAME_LLM,
                   FRAME_LZMA, FRAME_LZMA2, FRAME_NAMES, FRAME_PARAMS, FRAME_SEEK, FRAME_STORED, FRAME_ZSTD,
                   K_BACKEND, K_ENSEMBLE, K_MODEL_ID, K_MODEL_NAME, K_SCHEDULE, K_VOCAB, K_WINDOW, K_WRITER, MAGIC,
                   MAX_FRAME_SIZE, MAX_LANES, MAX_PARAMS, MAX_SEEK_ENTRIES, SCHEDULE_BATCHED, SCHEDULE_LOCKSTEP,
                   SCHEDULE_NAMES, VERSION, VERSIONS, backend_id, check,
                   frame_checksum, read_varint, total_hasher, varint)
from .writer import FrameWriter, build_stream

__all__ = [n for n in dir() if not n.startswith("_") and n not in ("frames", "header", "parser", "wire", "writer")]
