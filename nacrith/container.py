"""The nacrith stream format: header, frames, end frame (``codec/FORMAT.md`` is normative).

Pure: parsing needs no numpy, llama.cpp or native import. ``StreamParser`` is the one reader of
the stream grammar ``header (params | data frame)* [seek table] end``; the decoder, ``-t``,
``-l`` and random access (``nacrith.decoder.SeekIndex``) all use it. Encoders write format
version 2 (compact header with the params block and a header check, preset ids, an end frame
of one byte for one data frame); version 1 streams are still read.

All integers are little-endian. Every length is checked against the bytes that remain and
against caps before anything is allocated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from dataclasses import dataclass

from .errors import FormatError, TruncatedError
from .params import ENSEMBLE_ALGORITHM, ENSEMBLE_PRESETS, WINDOW_PRESETS, EnsembleParams, Window

MAGIC = b"\x89NCR\r\n\x1a\n"
VERSION = 2  # written
VERSIONS = (1, 2)  # read
CHECK_SIZE = 4  # BLAKE2b-32 header / params frame check (version 2)
DESC_PARAMS = 0x20  # version 2 descriptor: the params block follows
MAX_PARAMS = 1 << 16  # bytes of a parameter block
MAX_FRAME_SIZE = 1 << 30  # original bytes per frame
MAX_LANES = 256  # llama.cpp's LLAMA_MAX_SEQ: sequences one context holds

FRAME_END = 0
FRAME_STORED = 1
FRAME_ZSTD = 2
FRAME_LLM = 3
FRAME_PARAMS = 4
FRAME_LZMA = 5
FRAME_SEEK = 6
FRAME_LZMA2 = 7
FRAME_NAMES = {FRAME_STORED: "stored", FRAME_ZSTD: "zstd", FRAME_LLM: "llm", FRAME_PARAMS: "params",
               FRAME_LZMA: "lzma", FRAME_SEEK: "seek", FRAME_LZMA2: "lzma2"}
DATA_FRAMES = (FRAME_STORED, FRAME_ZSTD, FRAME_LLM, FRAME_LZMA, FRAME_LZMA2)
END_MAGIC = b"NCRE"
END_FRAME = struct.Struct("<BQ8sQ4s")  # version 1: type 0, total size, checksum, seek table offset, magic
END_FRAME_V2 = struct.Struct("<B8sQ4s")  # version 2 with a seek table: type 0, checksum, seek offset, magic
MAX_SEEK_ENTRIES = 1 << 24

# parameter keys; < 0x80 are critical (a decoder must understand them), >= 0x80 informational
K_MODEL_ID = 0x01
K_BACKEND = 0x02
K_VOCAB = 0x03
K_WINDOW = 0x04
K_ENSEMBLE = 0x05
K_MODEL_NAME = 0x80
K_WRITER = 0x81
# version 2 params block entries (critical keys < 0x80 share the numbering space of version 1's
# params frame, but live in another structure)
K_SCHEDULE = 0x01  # the LLM evaluation schedule: 1 = lockstep (codec/FORMAT.md, "Evaluation schedule")
SCHEDULE_BATCHED = 0  # not written: batch-invariant backend, any batching on either side
SCHEDULE_LOCKSTEP = 1  # both sides: one token per lane per llama_decode, no drafts
SCHEDULE_NAMES = {SCHEDULE_BATCHED: "batched", SCHEDULE_LOCKSTEP: "lockstep"}

# version 2 presets (codec/FORMAT.md, "Params block"); frozen: new ones get new ids
MODEL_PRESETS = {1: ("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                     "SmolLM2-135M-Instruct Q4_1")}
BACKEND_PRESETS = {1: "llama-cpp-python 0.3.36; CPU SSE3 SSSE3 AVX AVX2 F16C FMA BMI2 LLAMAFILE OPENMP REPACK; "
                      "fa=1 kv=q8_0 rot=1",
                   2: "llama-cpp-python 0.3.36; CPU SSE3 SSSE3 AVX AVX2 F16C FMA BMI2 LLAMAFILE OPENMP REPACK; "
                      "fa=1 kv=f16/bf16 kernel=nacrith-fa-1 rot=1"}


def frame_checksum(data: bytes) -> bytes:
    """8-byte BLAKE2b (digest_size=8, no key) of a frame's original bytes."""
    return hashlib.blake2b(data, digest_size=8).digest()


def check(data) -> bytes:
    """4-byte BLAKE2b (digest_size=4, no key): the version 2 header and params frame check."""
    return hashlib.blake2b(data, digest_size=CHECK_SIZE).digest()


def backend_id(fingerprint: str) -> bytes:
    """BLAKE2b-64 of a backend fingerprint string (what streams store)."""
    return hashlib.blake2b(fingerprint.encode(), digest_size=8).digest()


def total_hasher():
    """Incremental BLAKE2b (digest_size=8, no key) over the whole original content."""
    return hashlib.blake2b(digest_size=8)


def varint(n: int) -> bytes:
    """Unsigned LEB128: 7 bits per byte, least significant group first, high bit = more."""
    if n < 0:
        raise ValueError("varint of a negative number")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_varint(buf, pos: int, what: str) -> tuple[int, int]:
    """Parse a canonical LEB128 varint of at most 9 bytes (< 2^63). Returns (value, new pos)."""
    n = 0
    for i in range(9):
        _need(buf, pos + i, 1, what)
        b = buf[pos + i]
        n |= (b & 0x7F) << (7 * i)
        if not b & 0x80:
            if b == 0 and i > 0:
                raise FormatError(f"non-canonical varint for {what} at offset {pos}")
            return n, pos + i + 1
    raise FormatError(f"varint for {what} at offset {pos} is too long")


@dataclass
class StreamHeader:
    """The stream header: the most original bytes per frame and, in version 2, the params of
    the LLM frames that follow (None: no params block; a params frame may come later).

    Version 2 stores ``frame_size`` as a power of two (the bound written is the next power of
    two at or above it)."""

    frame_size: int
    params: "LLMParams | None" = None
    version: int = VERSION

    def encode(self) -> bytes:
        if self.version == 1:
            return MAGIC + bytes([1, 0]) + varint(self.frame_size)
        log = max(0, (self.frame_size - 1).bit_length())
        body = b""
        if self.params is not None:
            block = self.params.block()
            body = varint(len(block)) + block
        head = MAGIC + bytes([2, log | (DESC_PARAMS if self.params is not None else 0)]) + body
        return head + check(head)


def _ref(presets: dict, value) -> int:
    """The preset id whose value is ``value`` (0: none)."""
    return next((k for k, v in presets.items() if v == value), 0)


def _ensemble_fields():
    return dataclasses.fields(EnsembleParams)


def encode_ensemble(e: EnsembleParams) -> bytes:
    """EnsembleRef: a preset id, or 0 then every field in declaration order (varint for int and
    bool fields, binary64 for float fields), prefixed by their count."""
    ref = next((k for k, v in ENSEMBLE_PRESETS.items() if EnsembleParams(**v) == e), 0)
    if ref:
        return varint(ref)
    fields = _ensemble_fields()
    out = [varint(0), varint(len(fields))]
    for f in fields:
        v = getattr(e, f.name)
        out.append(struct.pack("<d", v) if isinstance(f.default, float) else varint(int(v)))
    return b"".join(out)


def read_ensemble(buf, pos: int) -> tuple[EnsembleParams, int]:
    ref, pos = read_varint(buf, pos, "ensemble preset")
    if ref:
        if ref not in ENSEMBLE_PRESETS:
            raise FormatError(f"unknown ensemble preset {ref} (newer writer?)")
        return EnsembleParams(**ENSEMBLE_PRESETS[ref]), pos
    n, pos = read_varint(buf, pos, "ensemble field count")
    fields = _ensemble_fields()
    if n > len(fields):
        raise FormatError(f"{n} ensemble fields, this nacrith knows {len(fields)} (newer writer?)")
    vals = {}
    for f in fields[:n]:
        if isinstance(f.default, float):
            _need(buf, pos, 8, "ensemble field")
            vals[f.name] = struct.unpack_from("<d", buf, pos)[0]
            pos += 8
        else:
            v, pos = read_varint(buf, pos, "ensemble field")
            if isinstance(f.default, bool) and v > 1:
                raise FormatError(f"ensemble field {f.name} = {v}")
            vals[f.name] = bool(v) if isinstance(f.default, bool) else v
    try:
        return EnsembleParams(**vals), pos
    except ValueError as e:
        raise FormatError(str(e)) from None


@dataclass
class LLMParams:
    """Everything a decoder needs for the LLM frames that follow a params frame.

    model_id: the first 16 bytes of the GGUF file's sha256; backend_id: BLAKE2b-64 of the
    backend fingerprint (``nacrith.backend.fingerprint``: in version 2 without the device);
    offload: layers offloaded to a GPU (0: CPU only, -1: all; None in version 1, where the
    device is part of the fingerprint); window: sliding KV window (tokens); ensemble:
    hyper-parameters of the n-gram, bias, mixer and skip (``nacrith.ensemble``); algorithm: the
    ensemble arithmetic's id; model_name, writer: informational (version 2: only on request);
    backend (a label), n_vocab, bos: version 1 only; schedule: ``SCHEDULE_BATCHED`` (the backend is
    batch-invariant for this model: the encoder batches, the decoder may draft) or
    ``SCHEDULE_LOCKSTEP`` (both sides evaluate one token per lane per step; written as the
    critical entry ``K_SCHEDULE``).
    """

    model_id: bytes
    backend_id: bytes
    window: Window
    ensemble: EnsembleParams
    offload: int | None = 0
    algorithm: int = ENSEMBLE_ALGORITHM
    model_name: str = ""
    writer: str = ""
    backend: str = ""
    n_vocab: int | None = None
    bos: int | None = None
    version: int = VERSION
    schedule: int = SCHEDULE_BATCHED

    def block(self) -> bytes:
        """The version 2 params block (codec/FORMAT.md, "Params block")."""
        model = next((k for k, (sha, _) in MODEL_PRESETS.items() if bytes.fromhex(sha)[:16] == self.model_id), 0)
        backend = _ref({k: backend_id(v) for k, v in BACKEND_PRESETS.items()}, self.backend_id)
        window = _ref(WINDOW_PRESETS, self.window)
        out = [varint(model), b"" if model else self.model_id, varint(backend), b"" if backend else self.backend_id,
               varint(0 if not self.offload else 1 if self.offload < 0 else self.offload + 1),
               varint(window),
               b"" if window else varint(self.window.size) + varint(self.window.sink) + varint(self.window.slide),
               varint(self.algorithm), encode_ensemble(self.ensemble)]
        if self.schedule != SCHEDULE_BATCHED:
            out.append(bytes([K_SCHEDULE]) + varint(1) + bytes([self.schedule]))
        for key, text, cap in ((K_MODEL_NAME, self.model_name, 48), (K_WRITER, self.writer, 64)):
            if text:
                v = text.encode()[:cap]
                out.append(bytes([key]) + varint(len(v)) + v)
        return b"".join(out)

    def encode(self) -> bytes:
        """The params frame (version 2: type, block length, block, check)."""
        block = self.block()
        frame = bytes([FRAME_PARAMS]) + varint(len(block)) + block
        return frame + check(frame)

    @property
    def model_label(self) -> str:
        """The model's name: recorded, else the preset's, else '?'."""
        known = {bytes.fromhex(sha)[:16]: name for sha, name in MODEL_PRESETS.values()}
        return self.model_name or known.get(self.model_id, "?")

    @property
    def backend_label(self) -> str:
        """The backend: its v1 label, the preset's fingerprint string, else its hash."""
        known = {backend_id(v): v for v in BACKEND_PRESETS.values()}
        return self.backend or known.get(self.backend_id, f"id {self.backend_id.hex()}")


def offload_name(n: int | None) -> str:
    """The device a stream's LLM frames ran on, as the option that selects it."""
    return "cpu (--gpu-layers 0)" if not n else "gpu, all layers (--gpu-layers -1)" if n < 0 else \
        f"gpu, {n} layers (--gpu-layers {n})"


def _need(buf, pos: int, n: int, what: str) -> None:
    if pos + n > len(buf):
        raise TruncatedError(f"truncated stream: {what} needs {n} bytes at offset {pos}, "
                             f"{max(0, len(buf) - pos)} left")


def read_header(buf, pos: int = 0) -> tuple[StreamHeader, int]:
    """Parse the stream header at ``buf[pos:]``. Returns (header, offset after it).

    Raises:
        FormatError: not a nacrith stream, unsupported version, reserved flags, bad frame size,
            header check mismatch (version 2).
        TruncatedError: the header is cut short.
    """
    start = pos
    head = bytes(buf[pos:pos + len(MAGIC)])
    if not head:
        raise TruncatedError("empty input: not a nacrith stream")
    if head != MAGIC:
        if len(head) < len(MAGIC) and MAGIC.startswith(head):
            raise TruncatedError("truncated stream: incomplete magic number")
        raise FormatError("not a nacrith stream (bad magic number)")
    pos += len(MAGIC)
    _need(buf, pos, 2, "header")
    version, flags = buf[pos], buf[pos + 1]
    if version not in VERSIONS:
        raise FormatError(f"unsupported format version {version} (this nacrith reads "
                          f"{', '.join(map(str, VERSIONS))})")
    if version == 1:
        if flags != 0:
            raise FormatError(f"reserved header flags set (0x{flags:02x})")
        frame_size, pos = read_varint(buf, pos + 2, "frame size")
        if not 1 <= frame_size <= MAX_FRAME_SIZE:
            raise FormatError(f"frame size {frame_size} out of range [1, {MAX_FRAME_SIZE}]")
        return StreamHeader(frame_size, None, 1), pos
    pos += 2
    params = None
    if flags & DESC_PARAMS:
        n, pos = read_varint(buf, pos, "params block length")
        if n > MAX_PARAMS:
            raise FormatError(f"params block of {n} bytes exceeds {MAX_PARAMS}")
        _need(buf, pos, n + CHECK_SIZE, "header params block")
        _verify_check(buf, start, pos + n, "stream header")
        params = _read_block(buf, pos, pos + n, start)
        pos += n
    else:
        _need(buf, pos, CHECK_SIZE, "header check")
        _verify_check(buf, start, pos, "stream header")
    # flags are checked after the check: a flipped bit is reported as corruption
    if flags & 0xC0:
        raise FormatError(f"reserved header flags set (0x{flags:02x})")
    if (flags & 0x1F) > 30:
        raise FormatError(f"frame size 2^{flags & 0x1F} out of range [1, {MAX_FRAME_SIZE}]")
    return StreamHeader(1 << (flags & 0x1F), params, 2), pos + CHECK_SIZE


def _verify_check(buf, start: int, end: int, what: str) -> None:
    """Raise FormatError unless the 4 bytes at ``end`` are the check of ``buf[start:end]``."""
    if check(bytes(buf[start:end])) != bytes(buf[end:end + CHECK_SIZE]):
        raise FormatError(f"{what} at offset {start} is corrupt (header check mismatch)")


def _read_block(buf, pos: int, end: int, start: int) -> LLMParams:
    """Parse the version 2 params block ``buf[pos:end]`` (``start``: offset for messages)."""
    def ref(what):
        nonlocal pos
        v, pos = read_varint(buf, pos, what)
        if pos > end:
            raise FormatError(f"params at offset {start}: {what} overruns the block")
        return v

    def take(n, what):
        nonlocal pos
        if pos + n > end:
            raise FormatError(f"params at offset {start}: {what} overruns the block")
        pos += n
        return bytes(buf[pos - n:pos])

    model = ref("model preset")
    if model and model not in MODEL_PRESETS:
        raise FormatError(f"params at offset {start}: unknown model preset {model} (newer writer?)")
    model_id = bytes.fromhex(MODEL_PRESETS[model][0])[:16] if model else take(16, "model id")
    backend = ref("backend preset")
    if backend and backend not in BACKEND_PRESETS:
        raise FormatError(f"params at offset {start}: unknown backend preset {backend} (newer writer?)")
    bid = backend_id(BACKEND_PRESETS[backend]) if backend else take(8, "backend id")
    off = ref("offload")
    window_ref = ref("window preset")
    if window_ref:
        if window_ref not in WINDOW_PRESETS:
            raise FormatError(f"params at offset {start}: unknown window preset {window_ref}")
        window = WINDOW_PRESETS[window_ref]
    else:
        size, sink, slide = ref("window size"), ref("window sink"), ref("window slide")
        try:
            window = Window(size, sink, slide)
        except ValueError as e:
            raise FormatError(f"params at offset {start}: {e}") from None
    algorithm = ref("ensemble algorithm")
    if algorithm != ENSEMBLE_ALGORITHM:
        raise FormatError(f"params at offset {start}: unsupported ensemble algorithm {algorithm} "
                          f"(this nacrith implements {ENSEMBLE_ALGORITHM})")
    ensemble, pos = read_ensemble(buf, pos)
    if pos > end:
        raise FormatError(f"params at offset {start}: ensemble parameters overrun the block")
    vals = _read_entries(buf, pos, end, start, {K_SCHEDULE: 1})
    name = vals.get(K_MODEL_NAME, b"").decode("utf-8", "replace")
    writer = vals.get(K_WRITER, b"").decode("utf-8", "replace")
    schedule = SCHEDULE_BATCHED
    if K_SCHEDULE in vals:
        v = vals[K_SCHEDULE]
        if len(v) != 1 or v[0] != SCHEDULE_LOCKSTEP:
            raise FormatError(f"params at offset {start}: unknown evaluation schedule {v.hex() or 'of 0 bytes'} "
                              "(newer writer?)")
        schedule = SCHEDULE_LOCKSTEP
    return LLMParams(model_id, bid, window, ensemble, 0 if off == 0 else -1 if off == 1 else off - 1,
                     algorithm, name, writer, schedule=schedule)


def _read_entries(buf, pos: int, end: int, start: int, known: dict) -> dict[int, bytes]:
    """``Key · Size · Value`` entries of ``buf[pos:end]``: unknown critical keys (< 0x80, not in
    ``known``) and duplicates are refused, unknown informational ones kept."""
    vals: dict[int, bytes] = {}
    while pos < end:
        k = buf[pos]
        n, pos = read_varint(buf, pos + 1, "parameter length")
        if pos + n > end:
            raise FormatError(f"parameter 0x{k:02x} overruns the params frame at offset {start}")
        if k in vals:
            raise FormatError(f"duplicate parameter 0x{k:02x} at offset {start}")
        if k < 0x80 and k not in known:
            raise FormatError(f"unsupported critical parameter 0x{k:02x} (newer writer?)")
        vals[k] = bytes(buf[pos:pos + n])
        pos += n
    return vals


def read_params(buf, pos: int, version: int = VERSION) -> tuple[LLMParams, int]:
    """Parse a params frame at ``buf[pos]`` (type byte included). Returns (params, next offset)."""
    start = pos
    hlen, pos = read_varint(buf, pos + 1, "params length")
    if hlen > MAX_PARAMS:
        raise FormatError(f"params frame at offset {start}: length {hlen} exceeds {MAX_PARAMS}")
    if version == 2:
        _need(buf, pos, hlen + CHECK_SIZE, "params frame")
        _verify_check(buf, start, pos + hlen, "params frame")
        return _read_block(buf, pos, pos + hlen, start), pos + hlen + CHECK_SIZE
    _need(buf, pos, hlen, "params frame")
    end = pos + hlen
    known = {K_MODEL_ID: 16, K_VOCAB: 8, K_WINDOW: 12, K_ENSEMBLE: None, K_BACKEND: None}
    vals = _read_entries(buf, pos, end, start, known)
    for k, size in known.items():
        if k not in vals:
            raise FormatError(f"params frame at offset {start} lacks parameter 0x{k:02x}")
        if size is not None and len(vals[k]) != size:
            raise FormatError(f"parameter 0x{k:02x} has {len(vals[k])} bytes, expected {size}")
    n_vocab, bos = struct.unpack("<II", vals[K_VOCAB])
    size, sink, slide = struct.unpack("<III", vals[K_WINDOW])
    if not (0 < n_vocab < (1 << 22) and bos < n_vocab):
        raise FormatError(f"bad vocabulary parameters ({n_vocab}, {bos})")
    try:
        window = Window(size, sink, slide)
    except ValueError as e:
        raise FormatError(str(e)) from None
    try:
        ensemble = EnsembleParams.decode(vals[K_ENSEMBLE])
    except ValueError as e:
        raise FormatError(f"params frame at offset {start}: {e}") from None
    if len(vals[K_BACKEND]) < 8:
        raise FormatError("backend parameter shorter than its 8-byte hash")
    bid, backend = vals[K_BACKEND][:8], vals[K_BACKEND][8:].decode("utf-8", "replace")
    name = vals.get(K_MODEL_NAME, b"").decode("utf-8", "replace")
    writer = vals.get(K_WRITER, b"").decode("utf-8", "replace")
    return LLMParams(vals[K_MODEL_ID], bid, window, ensemble, None, 0, name, writer, backend, n_vocab, bos,
                     1), end


@dataclass
class Frame:
    """One data frame: ``kind`` (FRAME_*), ``raw_size`` original bytes, ``payload`` (memoryview),
    ``checksum`` (8 bytes), ``offset`` (of the frame in the stream), ``params`` (the LLMParams in
    force, or None), ``version`` (of the stream: the LLM payload's lane table depends on it)."""

    kind: int
    raw_size: int
    payload: memoryview
    checksum: bytes
    offset: int
    params: LLMParams | None = None
    version: int = VERSION


@dataclass
class EndFrame:
    """The end frame: total original size, BLAKE2b-64 of all original bytes, offset of the seek
    table (0: none). Version 1: fixed 29 bytes; version 2: one byte (at most one data frame; the
    parser fills in the size and the frame's checksum) or 21 bytes with a seek table."""

    total_size: int
    checksum: bytes
    offset: int
    seek_offset: int = 0


@dataclass
class SeekEntry:
    """One data frame in the seek table: its original bytes, its offset in the stream, and the
    offset of the params frame in force for it (0: none)."""

    raw_size: int
    offset: int
    params_offset: int


def write_frame(kind: int, raw: bytes, payload: bytes) -> bytes:
    return bytes([kind]) + varint(len(raw)) + varint(len(payload)) + frame_checksum(raw) + payload


def write_end(checksum: bytes | None = None, seek_offset: int = 0) -> bytes:
    """Version 2 end frame: one byte, or with a seek table (``seek_offset``, required when there
    are two data frames or more) the whole-stream ``checksum``, the offset and the end magic."""
    if not seek_offset:
        return bytes([FRAME_END])
    return END_FRAME_V2.pack(FRAME_END, checksum, seek_offset, END_MAGIC)


def build_stream(frames: list[tuple[int, bytes, bytes]], frame_size: int = 1 << 20,
                 params: LLMParams | None = None) -> bytes:
    """A version 2 stream of the given (type, original bytes, payload) data frames, with
    ``params`` in the header (for LLM frames), a seek table when there are two frames or more,
    and the end frame: for tests, vectors and fuzzing (the encoder is ``nacrith.encoder``)."""
    out = [StreamHeader(frame_size, params).encode()]
    pos, entries, h = len(out[0]), [], total_hasher()
    for kind, raw, payload in frames:
        entries.append(SeekEntry(len(raw), pos, 0))
        out.append(write_frame(kind, raw, payload))
        pos += len(out[-1])
        h.update(raw)
    if len(frames) > 1:
        out += [write_seek_table(entries), write_end(h.digest(), pos)]
    else:
        out.append(write_end())
    return b"".join(out)


def write_end_v1(total_size: int, total_digest: bytes, seek_offset: int = 0) -> bytes:
    """Version 1 end frame (fixed 29 bytes)."""
    return END_FRAME.pack(FRAME_END, total_size, total_digest, seek_offset, END_MAGIC)


def write_seek_table(entries: list[SeekEntry]) -> bytes:
    """Seek table frame: type 6, entry count, then per data frame: raw size, offset delta from
    the previous data frame (the first: from the stream start), params frame offset (0: none)."""
    out = [bytes([FRAME_SEEK]), varint(len(entries))]
    prev = 0
    for e in entries:
        out += [varint(e.raw_size), varint(e.offset - prev), varint(e.params_offset)]
        prev = e.offset
    return b"".join(out)


def read_seek_table(buf, pos: int, limit: int) -> tuple[list[SeekEntry], int]:
    """Parse the seek table frame at ``buf[pos]``; offsets must increase and stay below ``limit``."""
    count, p = read_varint(buf, pos + 1, "seek table count")
    if count > MAX_SEEK_ENTRIES:
        raise FormatError(f"seek table at offset {pos}: {count} entries")
    _need(buf, p, 3 * count, "seek table")  # each entry is at least 3 bytes
    entries, prev = [], 0
    for _ in range(count):
        raw, p = read_varint(buf, p, "seek entry size")
        delta, p = read_varint(buf, p, "seek entry offset")
        params, p = read_varint(buf, p, "seek entry params")
        off = prev + delta
        if (entries and delta == 0) or off >= limit or params >= max(off, 1) and params != 0:
            raise FormatError(f"seek table at offset {pos}: bad entry")
        entries.append(SeekEntry(raw, off, params))
        prev = off
    return entries, p


def read_end(buf, pos: int, version: int = 1) -> tuple[EndFrame, int]:
    """The fixed-size end frame at ``buf[pos:]``: version 1, or version 2 with a seek table
    (its total size is then 0: the seek table has the frame sizes)."""
    if version == 1:
        _need(buf, pos, END_FRAME.size, "end frame")
        _, total, digest, seek, magic = END_FRAME.unpack_from(buf, pos)
        size = END_FRAME.size
    else:
        _need(buf, pos, END_FRAME_V2.size, "end frame")
        (_, digest, seek, magic), total, size = END_FRAME_V2.unpack_from(buf, pos), 0, END_FRAME_V2.size
        if seek == 0:
            raise FormatError(f"bad end frame at offset {pos}: no seek table offset")
    if magic != END_MAGIC:
        raise FormatError(f"bad end frame at offset {pos}")
    return EndFrame(total, digest, pos, seek), pos + size


def _at(e: Exception, base: int) -> Exception:
    """``e`` with buffer offsets in its message made stream offsets (``base``: stream offset
    of the buffer's first byte)."""
    if base:
        import re

        msg = re.sub(r"offset (\d+)", lambda m: f"offset {int(m.group(1)) + base}", str(e))
        return type(e)(msg)
    return e


@dataclass
class SeekTable:
    """The seek table frame: one ``SeekEntry`` per data frame, and its own stream offset."""

    entries: list
    offset: int


class StreamParser:
    """Pull parser of a nacrith stream: ``header (params | data frame)* [seek table] end``.

    Feed bytes with ``feed(data)`` (or give the whole stream as ``data``); ``next()`` returns the
    next item: ``StreamHeader``, ``LLMParams``, ``Frame`` (``params`` set for LLM frames),
    ``SeekTable`` or ``EndFrame``, or ``None`` when it needs more input. Offsets in items and in
    errors are stream offsets. Structure is checked here (LLM frames follow a params frame, the
    seek table lists exactly the data frames before it, the end frame points to it); content
    checksums are the decoder's job. Bytes after the end frame are kept in ``unused_data``.

    Args:
        data: the whole stream (parsed in place: payloads are views of it), or None to feed.
        offset, header, params: start in the middle of a stream (random access): the stream
            offset of the first byte given, and the header and params in force there. The seek
            table is then not checked against the frames.

    Raises (from ``next``):
        FormatError: malformed stream. TruncatedError: only from ``close()`` (input ended early).
    """

    def __init__(self, data=None, *, offset: int = 0, header: StreamHeader | None = None,
                 params: LLMParams | None = None):
        self._fed = data is None
        self._buf = bytearray() if data is None else memoryview(data)
        self._pos = 0  # index in _buf of the next unparsed byte
        self._base = offset  # stream offset of _buf[0]
        self.header = header
        self.params = params
        self._params_at = 0
        self._check_seek = offset == 0
        self.entries: list[SeekEntry] = []
        self.seek: SeekTable | None = None
        self.end: EndFrame | None = None
        self.unused_data = b""
        self._last_checksum = b""

    @property
    def offset(self) -> int:
        """Stream offset of the next unparsed byte."""
        return self._base + self._pos

    def feed(self, data) -> None:
        if not self._fed:
            raise ValueError("parser was given the whole stream")
        if self.end is not None:
            self.unused_data += bytes(data)
            return
        if self._pos:
            del self._buf[:self._pos]
            self._base += self._pos
            self._pos = 0
        self._buf += data

    def __iter__(self):
        while (item := self.next()) is not None:
            yield item
        self.close()

    def next(self):
        if self.end is not None:
            return None
        try:
            with memoryview(self._buf) as buf:
                item, end = self._parse(buf[self._pos:])
        except TruncatedError:
            return None
        self._pos += end
        return item

    def close(self) -> None:
        """Declare the input complete. Raises TruncatedError when no end frame was read."""
        if self.end is None:
            if self.header is None and not len(self._buf):
                raise TruncatedError("empty input: not a nacrith stream")
            with memoryview(self._buf) as buf:  # its message says what is cut short
                self._parse(buf[self._pos:])
            raise TruncatedError(f"truncated stream: input ends at offset {self._base + len(self._buf)}, "
                                 "before the end frame")

    def _end_v2(self, buf, at: int):
        """Version 2 end frame: one byte for at most one data frame (the whole-stream checksum
        is then the frame's), else with the checksum and the seek table's offset."""
        n = len(self.entries)
        if self._check_seek and n <= 1:
            if self.seek is not None:
                raise FormatError(f"seek table before the end frame at offset {at} of a stream with {n} frames")
            digest = self._last_checksum if n else total_hasher().digest()
            return EndFrame(sum(e.raw_size for e in self.entries), digest, 0, 0), 1
        if self._check_seek and self.seek is None:
            raise FormatError(f"stream of {n} data frames without a seek table before offset {at}")
        try:
            fr, end = read_end(buf, 0, 2)
        except (FormatError, TruncatedError) as e:
            raise _at(e, at) from None
        fr.total_size = sum(e.raw_size for e in self.entries)
        return fr, end

    def _parse(self, buf):
        """Parse the item at ``buf[0]`` (stream offset ``self.offset``): (item, its length)."""
        at = self.offset

        def read(fn, *args):  # buffer offsets in read_*'s messages become stream offsets
            try:
                return fn(buf, 0, *args)
            except (FormatError, TruncatedError) as e:
                raise _at(e, at) from None

        if self.header is None:
            self.header, end = read(read_header)
            if self.header.params is not None:
                self.params = self.header.params  # in force from the start (ParamsOffset 0)
            return self.header, end
        if not len(buf):
            raise TruncatedError(f"truncated stream: no end frame at offset {at}")
        kind = buf[0]
        version = self.header.version
        if kind == FRAME_PARAMS:
            self.params, end = read(read_params, version)
            self._params_at = at
            return self.params, end
        if kind == FRAME_SEEK:
            if self.seek is not None:
                raise FormatError(f"second seek table at offset {at}")
            entries, end = read(read_seek_table, at)
            if self._check_seek and entries != self.entries:
                raise FormatError(f"seek table at offset {at} does not match the stream's frames")
            self.seek = SeekTable(entries, at)
            return self.seek, end
        if kind == FRAME_END and version == 2:
            fr, end = self._end_v2(buf, at)
        else:
            fr, end = read(read_frame, self.header.frame_size)
        fr.offset += at
        if isinstance(fr, EndFrame):
            want = self.seek.offset if self.seek else 0
            if fr.seek_offset != want:
                raise FormatError(f"end frame points to a seek table at {fr.seek_offset}, found {want}")
            self.end = fr
            self.unused_data = bytes(buf[end:])
            return fr, len(buf)
        if self.seek is not None:
            raise FormatError(f"data frame at offset {at} after the seek table")
        fr.version = version
        if fr.kind == FRAME_LLM:
            if self.params is None:
                raise FormatError(f"llm frame at offset {at} without a preceding params frame")
            fr.params = self.params
        if self._fed:
            fr.payload = memoryview(bytes(fr.payload))  # detach from the buffer
        self._last_checksum = fr.checksum
        self.entries.append(SeekEntry(fr.raw_size, at, self._params_at if fr.kind == FRAME_LLM else 0))
        return fr, end


def iter_frames(data):
    """Each data frame of the whole stream ``data`` (``Frame``, with ``params`` set), then the
    ``EndFrame``; trailing data is an error. Structure only, content checksums unchecked.

    Raises: FormatError, TruncatedError (malformed stream)."""
    p = StreamParser(data)
    for item in p:
        if isinstance(item, (Frame, EndFrame)):
            yield item
    if p.unused_data:
        raise FormatError(f"{len(p.unused_data)} bytes of trailing data after the end frame")


def read_frame(buf, pos: int, frame_size: int):
    """Parse the data or end frame at ``buf[pos:]``. Returns (Frame | EndFrame, next offset)."""
    _need(buf, pos, 1, "frame type")
    kind = buf[pos]
    if kind == FRAME_END:
        return read_end(buf, pos)
    if kind not in DATA_FRAMES:
        raise FormatError(f"unknown frame type {kind} at offset {pos}")
    raw_size, p = read_varint(buf, pos + 1, "frame size")
    psize, p = read_varint(buf, p, "payload size")
    if raw_size > frame_size or raw_size == 0:
        raise FormatError(f"frame at offset {pos} declares {raw_size} bytes (frame size is {frame_size})")
    if psize > raw_size:
        raise FormatError(f"frame at offset {pos}: payload of {psize} bytes for {raw_size} original bytes")
    _need(buf, p, 8, "frame checksum")
    checksum = bytes(buf[p:p + 8])
    p += 8
    _need(buf, p, psize, f"frame payload at offset {pos}")
    if kind == FRAME_STORED and psize != raw_size:
        raise FormatError(f"stored frame at offset {pos}: payload {psize} != size {raw_size}")
    return Frame(kind, raw_size, memoryview(buf)[p:p + psize], checksum, pos), p + psize


def write_llm_payload(lane_tokens: list[int], streams: list[bytes], version: int = VERSION) -> bytes:
    """Lane count, lane table, lane streams. Version 2 leaves out the last lane's stream size
    (the rest of the payload)."""
    sizes = [varint(len(s)) for s in streams]
    if version == 2:
        sizes[-1] = b""
    head = varint(len(streams)) + b"".join(varint(n) + s for n, s in zip(lane_tokens, sizes))
    return head + b"".join(streams)


def read_llm_payload(payload: memoryview, raw_size: int, offset: int,
                     version: int = VERSION) -> tuple[list[int], list[memoryview]]:
    """Split an LLM frame payload into (tokens per lane, coded stream per lane)."""
    n_lanes, pos = read_varint(payload, 0, "lane count")
    if not 1 <= n_lanes <= MAX_LANES:
        raise FormatError(f"llm frame at offset {offset}: {n_lanes} lanes (at most {MAX_LANES}): corrupt")
    counts, sizes = [], []
    for i in range(n_lanes):
        n, pos = read_varint(payload, pos, "lane tokens")
        counts.append(n)
        if version == 1 or i < n_lanes - 1:
            s, pos = read_varint(payload, pos, "lane stream size")
            sizes.append(s)
    if sum(counts) > raw_size:
        raise FormatError(f"llm frame at offset {offset}: {sum(counts)} tokens for {raw_size} bytes")
    if version == 2:
        if pos + sum(sizes) > len(payload):
            raise FormatError(f"llm frame at offset {offset}: lane streams overrun the payload")
        sizes.append(len(payload) - pos - sum(sizes))
    if pos + sum(sizes) != len(payload):
        raise FormatError(f"llm frame at offset {offset}: lane streams do not fill the payload")
    streams = []
    for s in sizes:
        streams.append(payload[pos:pos + s])
        pos += s
    return counts, streams
