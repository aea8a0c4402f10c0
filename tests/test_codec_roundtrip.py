"""Round trips through the real model and real llama.cpp on short real inputs."""

from __future__ import annotations

import lzma

from nacrith.options import Options
from nacrith.policy import compress
from nacrith.llm_frame import decode_llm_frame, encode_llm_frame
from nacrith.decoder import decompress
from nacrith.format import iter_frames
from nacrith.format import FRAME_LLM, FRAME_LZMA2, FRAME_STORED, FRAME_ZSTD, EndFrame, Frame, LLMParams, StreamParser
from nacrith.params import Window

from .conftest import corpus

UNTOKENISABLE = bytes([0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2]) + bytes(range(0xF5, 0x100))


def kinds(blob):
    return [fr.kind for fr in iter_frames(blob) if not isinstance(fr, EndFrame)]


def roundtrip(session, data, **opts):
    blob = compress(data, session, Options(**opts))
    assert decompress(blob, session) == data
    return blob


def test_alice_prefix_uses_the_llm(session):
    data = corpus("canterbury/alice29.txt")[:2500]
    blob = roundtrip(session, data)
    assert kinds(blob) == [FRAME_LLM]
    assert 8 * len(blob) / len(data) < 2.6  # the model, not zstd (zstd -19: ~3.4 bpb here)


def test_c_source(session):
    data = corpus("canterbury/fields.c")[:2000]
    assert kinds(roundtrip(session, data)) == [FRAME_LLM]


def test_utf8_cjk_emoji_and_crlf(session):
    data = ("日本語のテキスト、中文文本，한국어 텍스트. Emoji: 🙂🚀👩‍💻 and accents: é ü ñ.\r\n"
            "Second line\r\n<|im_start|>user\r\n").encode()
    roundtrip(session, data)
    # the tokenizer reproduces it (special-token text stays ordinary text): the LLM path works
    payload = encode_llm_frame(session, data, Options())
    assert payload is not None
    fr = Frame(FRAME_LLM, len(data), memoryview(payload), b"", 0, session.params(Options()))
    assert decode_llm_frame(session, fr) == data


def test_empty_and_one_byte(session):
    assert kinds(roundtrip(session, b"")) == []
    assert kinds(roundtrip(session, b"a")) == [FRAME_STORED]
    assert len(compress(b"", session)) <= 14 + 1  # header + end frame (format version 2)


def test_untokenisable_bytes_fall_back(session):
    from nacrith.policy import binary_stream

    for b in UNTOKENISABLE:
        data = b"Some text " + bytes([b]) + b" around a byte."
        try:
            toks = session.model.tokenize(data)
        except ValueError:  # invalid UTF-8: never handed to llama.cpp's tokenizer
            pass
        else:
            assert session.model.detokenize(toks) != data
        blob = roundtrip(session, data)
        # escaped inside an LLM frame or a binary frame, whichever is smaller (format version 2's
        # small header lets the LLM frame win even on 26 bytes)
        assert len(blob) <= len(binary_stream(data))


def test_invalid_utf8_and_binary_fall_back(session):
    roundtrip(session, b"caf\xe9 au lait, na\xefve")
    binary = corpus("canterbury/sum")[:3000]
    blob = roundtrip(session, binary)
    assert kinds(blob) in ([FRAME_ZSTD], [FRAME_STORED], [FRAME_LZMA2])
    # raw LZMA2 with searched settings: smaller than xz -9e's file, container included
    assert len(blob) < len(lzma.compress(binary, preset=9 | lzma.PRESET_EXTREME))


def test_lanes_and_window_slides(session):
    data = corpus("canterbury/alice29.txt")[5000:6500]
    blob = roundtrip(session, data, window=Window(48, 4, 16), max_lanes=3, min_lane_tokens=50, kv_budget=0)
    frames = [fr for fr in iter_frames(blob) if not isinstance(fr, EndFrame)]
    assert frames[0].kind == FRAME_LLM and frames[0].params.window == Window(48, 4, 16)


def test_several_frames(session):
    data = corpus("canterbury/alice29.txt")[:1600] + bytes(range(256)) * 3 + corpus("canterbury/fields.c")[:400]
    blob = roundtrip(session, data, frame_size=800)
    k = kinds(blob)
    assert len(k) == 4 and k[0] == k[1] == FRAME_LLM and k[2] != FRAME_LLM
    # the params are written once, in the stream header before the first (LLM) frame
    items = list(StreamParser(blob))
    assert items[0].params is not None and not any(isinstance(x, LLMParams) for x in items)


def test_non_default_parameters_decode_from_header(session):
    data = corpus("canterbury/xargs.1")[:1200]
    blob = compress(data, session, Options(window=Window(40, 2, 8), max_lanes=2, min_lane_tokens=20, kv_budget=0,
                                           frame_size=700, batch=5))
    frames = [fr for fr in iter_frames(blob) if not isinstance(fr, EndFrame)]
    assert len(frames) == 2 and all(fr.kind == FRAME_LLM and fr.params.window == Window(40, 2, 8) for fr in frames)
    assert decompress(blob, session) == data  # decompress takes no options: all from the stream


def test_compression_is_deterministic(session):
    data = corpus("canterbury/alice29.txt")[5000:5800]
    blob = compress(data, session)
    assert kinds(blob) == [FRAME_LLM] and compress(data, session) == blob
