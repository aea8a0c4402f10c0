"""Stream structure: varints, header, frames, strict rejection of foreign and broken input.

These tests build streams from stored/zstd frames, so they need no model.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os

import pytest
import zstandard

from nacrith.session import Session
from nacrith.decoder import decompress
from nacrith.format import iter_frames
from nacrith.format import (BACKEND_PRESETS, FRAME_STORED, FRAME_ZSTD, MAGIC, MODEL_PRESETS, EndFrame, LLMParams,
                               StreamHeader, StreamParser, backend_id, build_stream, read_header, read_params,
                               read_varint, total_hasher, varint, write_end, write_end_v1, write_frame)
from nacrith.errors import ChecksumError, FormatError, NacrithError, TruncatedError
from nacrith.params import EnsembleParams, LLM_ONLY
from nacrith.params import Window


def _stream(chunks, kind=FRAME_STORED, frame_size=1 << 20, params=None):
    payloads = [c if kind == FRAME_STORED else zstandard.ZstdCompressor().compress(c) for c in chunks]
    return build_stream([(kind, c, p) for c, p in zip(chunks, payloads)], frame_size, params)


def _v1_stream(chunks):
    h = total_hasher()
    out = [StreamHeader(1 << 20, version=1).encode()]
    for c in chunks:
        h.update(c)
        out.append(write_frame(FRAME_STORED, c, c))
    return b"".join(out) + write_end_v1(sum(map(len, chunks)), h.digest())


DEFAULT_PARAMS = LLMParams(bytes.fromhex(MODEL_PRESETS[1][0])[:16], backend_id(BACKEND_PRESETS[1]),
                           Window(1024, 4, 256), EnsembleParams())


NO_MODEL = Session(model="/nonexistent/model.gguf")  # any use of the model would fail


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 2**31, 2**62])
def test_varint_roundtrip(n):
    b = varint(n)
    assert read_varint(b, 0, "x") == (n, len(b))


def test_varint_rejects_noncanonical_and_long():
    with pytest.raises(FormatError):
        read_varint(b"\x80\x00", 0, "x")
    with pytest.raises(FormatError):
        read_varint(b"\xff" * 9 + b"\x01", 0, "x")
    with pytest.raises(TruncatedError):
        read_varint(b"\x80", 0, "x")


def test_stored_and_zstd_streams_decode_without_a_model():
    for kind in (FRAME_STORED, FRAME_ZSTD):
        s = _stream([b"hello " * 10, b"world" * 10], kind)
        assert decompress(s, NO_MODEL) == b"hello " * 10 + b"world" * 10


@pytest.mark.parametrize("blob", [
    b"", b"hello world, plain text\n", os.urandom(64), gzip.compress(b"x" * 100),
    bz2.compress(b"x" * 100), lzma.compress(b"x" * 100), zstandard.ZstdCompressor().compress(b"x"),
    MAGIC[:5],
])
def test_foreign_inputs_are_rejected(blob):
    with pytest.raises(FormatError):
        decompress(blob, NO_MODEL)


def test_header_fields_are_checked():
    good = _stream([b"abc"])
    bad_version = good[:8] + b"\x03" + good[9:]
    bad_flags = good[:9] + b"\x01" + good[10:]  # another frame size: the header check fails
    for blob, msg in [(bad_version, "version"), (bad_flags, "corrupt")]:
        with pytest.raises(FormatError, match=msg):
            decompress(blob, NO_MODEL)
    # a reserved bit or a frame size over 2^30 with a valid check is still refused
    for desc, msg in [(0x40 | 20, "reserved"), (31, "frame size")]:
        head = MAGIC + bytes([2, desc])
        from nacrith.format import check

        with pytest.raises(FormatError, match=msg):
            read_header(head + check(head))


def test_version_1_streams_still_decode():
    data = [b"first " * 20, b"second " * 20]
    v1 = _v1_stream(data)
    assert v1[8] == 1 and decompress(v1, NO_MODEL) == b"".join(data)
    assert decompress(_v1_stream([]), NO_MODEL) == b""


def test_every_truncation_is_rejected():
    good = _stream([b"some data " * 20, b"more" * 20], FRAME_ZSTD)
    for cut in range(len(good)):
        with pytest.raises(FormatError):
            decompress(good[:cut], NO_MODEL)


def test_trailing_data_rejected():
    with pytest.raises(FormatError, match="trailing"):
        decompress(_stream([b"abc"]) + b"\0", NO_MODEL)


def test_no_bit_flip_gives_a_wrong_output():
    data = b"The quick brown fox. " * 4
    good = _stream([data], FRAME_STORED)
    undetected = []
    for i in range(len(good)):
        for bit in range(8):
            bad = bytearray(good)
            bad[i] ^= 1 << bit
            try:
                out = decompress(bytes(bad), NO_MODEL)
            except NacrithError:
                continue
            assert out == data, f"byte {i} bit {bit}: wrong output accepted"
            undetected.append(i)
    # version 2: the frame size is under the header check (version 1 let it change harmlessly)
    assert undetected == []


def test_every_header_and_params_bit_flip_is_reported_as_corruption():
    """A flipped bit in the header or the params (model, backend, device, window, ensemble,
    informational strings) is corruption, never "another build" and never a changed listing."""
    for params in (DEFAULT_PARAMS, LLMParams(b"\x11" * 16, b"\x22" * 8, Window(64, 4, 16), LLM_ONLY, 5,
                                             model_name="some model", writer="nacrith x")):
        good = _stream([b"abc"], params=params)
        head_len = len(StreamHeader(1 << 20, params).encode())
        assert read_header(good)[0].params == params
        for i in range(8, head_len):  # the magic is checked on its own
            for bit in range(8):
                bad = bytearray(good)
                bad[i] ^= 1 << bit
                with pytest.raises(FormatError, match="corrupt|version|truncated|varint"):
                    read_header(bytes(bad))


def test_params_frame_bit_flips_are_corruption():
    blob = DEFAULT_PARAMS.encode()
    for i in range(1, len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x04
        with pytest.raises(FormatError):
            read_params(bytes(bad), 0)


def test_one_frame_overhead_at_default_settings():
    """Everything but the lane stream of a one-frame, one-lane LLM stream of a few KB at the
    default settings: header with params block and check, frame header, lane table, end."""
    from nacrith.format import FRAME_LLM, write_llm_payload

    lane = b"\x55" * 600
    payload = write_llm_payload([1100], [lane])
    blob = build_stream([(FRAME_LLM, b"x" * 4227, payload)], params=DEFAULT_PARAMS)
    assert len(blob) - len(lane) <= 40
    frames = [x for x in StreamParser(blob) if not isinstance(x, (StreamHeader, LLMParams))]
    assert frames[0].params == DEFAULT_PARAMS and isinstance(frames[-1], EndFrame)
    # model name and writer only on request
    assert b"nacrith" not in blob and b"SmolLM" not in blob


def test_concatenated_streams_decode_to_the_concatenation():
    a, b, c = _stream([b"one " * 10]), _stream([b"two " * 5, b"three"]), _v1_stream([b"four"])
    assert decompress(a + b + c + a, NO_MODEL) == b"one " * 10 + b"two " * 5 + b"three" + b"four" + b"one " * 10
    for step in (1, 3, 9, 64):
        from nacrith.decoder import ConcatDecoder

        d = ConcatDecoder(NO_MODEL)
        blob = a + b
        out = b"".join(d.feed(blob[i:i + step]) for i in range(0, len(blob), step))
        d.close()
        assert out == b"one " * 10 + b"two " * 5 + b"three" and d.streams == 2 and not d.trailing
    with pytest.raises(FormatError, match="3 bytes of trailing"):
        decompress(a + b"abc", NO_MODEL)
    with pytest.raises(TruncatedError):
        decompress(a + MAGIC[:5], NO_MODEL)
    with pytest.raises(FormatError):
        decompress(a + b[:-1], NO_MODEL)


def test_payload_larger_than_original_rejected():
    s = _stream([b"abc"], FRAME_ZSTD)
    with pytest.raises(FormatError, match="payload"):
        decompress(s, NO_MODEL)


def test_streaming_decoder_any_chunking():
    from nacrith.decoder import FrameDecoder

    data = [b"first frame " * 30, b"second " * 40, bytes(range(256))]
    s = _stream(data, FRAME_STORED)
    for step in (1, 2, 7, 64, len(s)):
        d = FrameDecoder(NO_MODEL)
        out = b"".join(d.feed(s[i:i + step]) for i in range(0, len(s), step))
        d.close()
        assert d.eof and out == b"".join(data)


def test_checksum_mismatch_names_frame():
    good = bytearray(_stream([b"abcdef"]))
    good[good.index(b"abcdef")] ^= 1
    with pytest.raises(ChecksumError, match="frame at offset"):
        decompress(bytes(good), NO_MODEL)


def test_frame_larger_than_frame_size_rejected():
    s = _stream([b"x" * 100], frame_size=128)
    s = s.replace(StreamHeader(128).encode(), StreamHeader(64).encode(), 1)
    with pytest.raises(FormatError, match="declares"):
        decompress(s, NO_MODEL)


def test_zstd_bomb_rejected():
    big = zstandard.ZstdCompressor().compress(b"\0" * 10_000_000)
    s = StreamHeader(100).encode() + write_frame(FRAME_ZSTD, b"\0" * 100, big) + write_end()
    with pytest.raises(FormatError):
        decompress(s, NO_MODEL)


def test_params_frame_roundtrip_and_checks():
    explicit = EnsembleParams(ngram_order=3, ngram_bits=12, ngram_kappa=2.5, mixer=0, skip_bits=1.0,
                              shared_heads=False)
    for p in (DEFAULT_PARAMS,
              LLMParams(b"\x11" * 16, b"\x22" * 8, Window(64, 4, 16), explicit, -1, model_name="m", writer="w"),
              LLMParams(b"\x11" * 16, b"\x22" * 8, Window(2048, 4, 512), LLM_ONLY, 7)):
        q, end = read_params(p.encode(), 0)
        assert end == len(p.encode()) and q == p
    # presets: the default settings take one byte each
    assert len(DEFAULT_PARAMS.block()) == 6
    # an unknown critical key is refused, an informational one skipped (each with a valid check)
    from nacrith.format import check

    body = DEFAULT_PARAMS.block()
    for extra, ok in ((b"\x7f\x01\x00", False), (b"\xf0\x01\x00", True)):
        frame = b"\x04" + varint(len(body + extra)) + body + extra
        frame += check(frame)
        if ok:
            assert read_params(frame, 0)[0] == DEFAULT_PARAMS
        else:
            with pytest.raises(FormatError, match="critical"):
                read_params(frame, 0)


def test_unknown_presets_and_algorithm_are_refused():
    from nacrith.format import check

    for i, what in ((0, "model preset"), (1, "backend preset"), (3, "window preset"), (4, "algorithm"),
                    (5, "ensemble preset")):
        body = bytearray(DEFAULT_PARAMS.block())
        body[i] = 9
        frame = b"\x04" + varint(len(body)) + bytes(body)
        with pytest.raises(FormatError, match=what):
            read_params(frame + check(frame), 0)


def test_llm_frame_without_params_rejected():
    s = bytearray(_stream([b"abc"]))
    s[len(StreamHeader(1 << 20).encode())] = 3  # stored -> llm
    with pytest.raises(FormatError, match="params"):
        list(iter_frames(bytes(s)))


def test_binary_input_never_needs_the_model():
    # random bytes cannot be reproduced by the tokenizer... but encode would still load the
    # model to try; check the decode side only
    data = os.urandom(1000)
    s = _stream([data], FRAME_STORED)
    assert decompress(s, NO_MODEL) == data
    assert isinstance(list(iter_frames(s))[-1], EndFrame)
