"""The stream header and the params of LLM frames (``codec/FORMAT.md``, "Header", "Params
block", "Params frame"; version 1's layout too): presets, the ensemble fields in their wire order,
``LLMParams`` with its block encoding, and their readers. Pure."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import FormatError, TruncatedError
from ..params import ENSEMBLE_ALGORITHM, ENSEMBLE_PRESETS, WINDOW_PRESETS, EnsembleParams, Window
from .wire import (CHECK_SIZE, DESC_PARAMS, FRAME_PARAMS, K_BACKEND, K_ENSEMBLE, K_MODEL_ID, K_MODEL_NAME,
                   K_SCHEDULE, K_VOCAB, K_WINDOW, K_WRITER, MAGIC, MAX_FRAME_SIZE, MAX_PARAMS, SCHEDULE_BATCHED,
                   SCHEDULE_LOCKSTEP, VERSION, VERSIONS, _need, backend_id, check, read_varint, varint)

# version 2 presets (codec/FORMAT.md, "Params block"); frozen: new ones get new ids
MODEL_PRESETS = {1: ("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                     "SmolLM2-135M-Instruct Q4_1")}
BACKEND_PRESETS = {1: "llama-cpp-python 0.3.36; CPU SSE3 SSSE3 AVX AVX2 F16C FMA BMI2 LLAMAFILE OPENMP REPACK; "
                      "fa=1 kv=q8_0 rot=1",
                   2: "llama-cpp-python 0.3.36; CPU SSE3 SSSE3 AVX AVX2 F16C FMA BMI2 LLAMAFILE OPENMP REPACK; "
                      "fa=1 kv=f16/bf16 kernel=nacrith-fa-1 rot=1"}


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


# The explicit ensemble fields of the params block, in wire order, with their wire type (varint
# "int"/"bool", binary64 "float"): codec/FORMAT.md, "Params block". Fixed here, not taken from
# the order of EnsembleParams' fields, so that reordering the dataclass cannot change the format
# (tests/test_format.py checks this list against the spec's text and the dataclass).
ENSEMBLE_WIRE_FIELDS = (("ngram_order", "int"), ("ngram_bits", "int"), ("ngram_kappa", "float"),
                        ("bias_lr", "float"), ("mixer", "int"), ("mix_lr", "float"), ("mix_init", "float"),
                        ("skip_bits", "float"), ("shared_heads", "bool"), ("match_min", "int"),
                        ("match_bits", "int"), ("match_lr", "float"))


def encode_ensemble(e: EnsembleParams) -> bytes:
    """EnsembleRef: a preset id, or 0 then every field in declaration order (varint for int and
    bool fields, binary64 for float fields), prefixed by their count."""
    ref = next((k for k, v in ENSEMBLE_PRESETS.items() if EnsembleParams(**v) == e), 0)
    if ref:
        return varint(ref)
    out = [varint(0), varint(len(ENSEMBLE_WIRE_FIELDS))]
    for name, kind in ENSEMBLE_WIRE_FIELDS:
        v = getattr(e, name)
        out.append(struct.pack("<d", v) if kind == "float" else varint(int(v)))
    return b"".join(out)


def read_ensemble(buf, pos: int) -> tuple[EnsembleParams, int]:
    ref, pos = read_varint(buf, pos, "ensemble preset")
    if ref:
        if ref not in ENSEMBLE_PRESETS:
            raise FormatError(f"unknown ensemble preset {ref} (newer writer?)")
        return EnsembleParams(**ENSEMBLE_PRESETS[ref]), pos
    n, pos = read_varint(buf, pos, "ensemble field count")
    if n > len(ENSEMBLE_WIRE_FIELDS):
        raise FormatError(f"{n} ensemble fields, this nacrith knows {len(ENSEMBLE_WIRE_FIELDS)} (newer writer?)")
    vals = {}
    for name, kind in ENSEMBLE_WIRE_FIELDS[:n]:
        if kind == "float":
            _need(buf, pos, 8, "ensemble field")
            vals[name] = struct.unpack_from("<d", buf, pos)[0]
            pos += 8
        else:
            v, pos = read_varint(buf, pos, "ensemble field")
            if kind == "bool" and v > 1:
                raise FormatError(f"ensemble field {name} = {v}")
            vals[name] = bool(v) if kind == "bool" else v
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
