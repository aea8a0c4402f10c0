"""Python API: one-shot, incremental (any chunking, 1 byte at a time), file objects in binary
and text mode, seek through the seek table."""

from __future__ import annotations

import io
import random

import pytest

import nacrith
from nacrith import NacrithCompressor, NacrithDecompressor
from nacrith.params import Window

from .conftest import corpus

SMALL = dict(window=Window(64, 4, 16), kv_budget=0, frame_size=700)


@pytest.fixture(scope="module")
def text():
    return corpus("canterbury/asyoulik.txt")[:2000] + "ünïcödé ✓\n".encode() + corpus("canterbury/fields.c")[:600]


@pytest.fixture(scope="module")
def blob(session, text):
    from nacrith.format import FRAME_LLM, Frame, iter_frames

    out = nacrith.compress(text, session=session, **SMALL)
    assert any(isinstance(f, Frame) and f.kind == FRAME_LLM for f in iter_frames(out))  # not a fallback
    return out


def test_one_shot(session, text, blob):
    assert nacrith.decompress(blob, session=session) == text
    assert nacrith.decompress(bytearray(blob), session=session) == text


def test_incremental_compress_equals_one_shot(session, text, blob):
    for step in (1, 333, len(text)):
        c = NacrithCompressor(session=session, **SMALL)
        out = b"".join(c.compress(text[i:i + step]) for i in range(0, len(text), step)) + c.flush()
        assert out == blob
        with pytest.raises(ValueError):
            c.compress(b"x")


def test_incremental_decompress_any_chunking(session, text, blob):
    for step in (1, 50, len(blob)):
        d = NacrithDecompressor(session=session)
        out = b"".join(d.decompress(blob[i:i + step]) for i in range(0, len(blob), step))
        assert out == text and d.eof and not d.needs_input and d.unused_data == b""
    d = NacrithDecompressor(session=session)
    assert d.decompress(blob + b"junk") == text and d.unused_data == b"junk"


def test_open_binary_read_write_seek(session, text, tmp_path):
    p = tmp_path / "f.nc"
    with nacrith.open(p, "wb", session=session, **SMALL) as f:
        for i in range(0, len(text), 100):
            f.write(text[i:i + 100])
    with nacrith.open(p, "rb", session=session) as f:
        assert f.read() == text
    with nacrith.open(p, "rb", session=session) as f:
        lines = list(f)
        assert b"".join(lines) == text and lines[0] == text.split(b"\n")[0] + b"\n"
    rng = random.Random(5)
    with nacrith.open(p, "rb", session=session) as f:
        for off in [rng.randrange(len(text)) for _ in range(4)] + [0, len(text) - 1]:
            assert f.seek(off) == off and f.tell() == off
            assert f.read(50) == text[off:off + 50]
        assert f.seek(-10, io.SEEK_END) == len(text) - 10 and f.read() == text[-10:]
        assert f.seek(len(text) + 5) == len(text) and f.read() == b""


def test_seek_never_trusts_a_corrupt_seek_table(session, text, blob, tmp_path):
    # the seek table has no checksum of its own: a wrong RawSize in it must not place an intact
    # frame at the wrong uncompressed offset (reported by a fresh user: wrong bytes, no error)
    from nacrith.format import SeekEntry, read_seek_table, write_seek_table
    from nacrith.decoder import SeekIndex

    idx = SeekIndex(io.BytesIO(blob))
    assert len(idx.entries) >= 3
    at = idx.end.seek_offset
    entries, end = read_seek_table(blob, at, at)
    e0 = entries[0]
    bad = [SeekEntry(e0.raw_size ^ 2, e0.offset, e0.params_offset)] + entries[1:]
    table = write_seek_table(bad)
    assert len(table) == end - at
    p = tmp_path / "bad-table.nc"
    p.write_bytes(blob[:at] + table + blob[end:])
    off = idx.starts[2] + 5
    with nacrith.open(p, "rb", session=session) as f:
        try:
            f.seek(off)
            got = f.read(20)
        except nacrith.FormatError:
            pass
        else:
            assert got == text[off:off + 20]
    with nacrith.open(p, "rb", session=session) as f, pytest.raises(nacrith.FormatError, match="seek table"):
        f.read()


def test_open_text_mode(session, text, tmp_path):
    p = tmp_path / "t.nc"
    s = text.decode()
    with nacrith.open(p, "wt", session=session, encoding="utf-8", **SMALL) as f:
        f.write(s)
    with nacrith.open(p, "rt", session=session, encoding="utf-8") as f:
        assert f.read() == s
    with nacrith.open(p, "rt", session=session, encoding="utf-8") as f:
        assert f.readline() == s.splitlines(keepends=True)[0]


def test_open_file_object_and_errors(session, tmp_path):
    buf = io.BytesIO()
    with nacrith.open(buf, "wb", session=session) as f:
        f.write(b"abc")
    assert nacrith.decompress(buf.getvalue(), session=session) == b"abc"
    with pytest.raises(ValueError):
        nacrith.open(tmp_path / "x", "rz")
    with pytest.raises(ValueError):
        nacrith.open(tmp_path / "x", "rb", frame_size=10)
    with pytest.raises(TypeError):
        nacrith.open(123, "rb")


def test_closed_session_raises_value_error(text, tmp_path):
    with nacrith.Session() as s:
        pass
    for call in (lambda: nacrith.compress(text, session=s), lambda: nacrith.compress(b"", session=s),
                 lambda: nacrith.decompress(b"x", session=s), lambda: NacrithCompressor(session=s),
                 lambda: nacrith.open(tmp_path / "w.nc", "wb", session=s).write(text)):
        with pytest.raises(ValueError, match="closed Session"):
            call()
    assert not (tmp_path / "w.nc").exists()


@pytest.mark.parametrize("bad", [5, 10**12, [104, 105], "text", None])
def test_only_bytes_like_data(session, bad):
    with pytest.raises(TypeError):
        nacrith.compress(bad, session=session)
    with pytest.raises(TypeError):
        NacrithCompressor(session=session).compress(bad)
    with pytest.raises(TypeError):
        nacrith.decompress(bad, session=session)
    with pytest.raises(TypeError):
        NacrithDecompressor(session=session).decompress(bad)


def test_guard_is_the_same_for_every_entry_point(session, tmp_path):
    """An input the guard rewrites as one binary frame (a binary run, text, the same binary run:
    apart, the second run cannot refer to the first): compress(), the compressor and the file
    object give the same bytes. (A plain binary input is one binary frame already: with format
    version 2's header the guard's stream is no smaller.)"""
    from nacrith import policy

    data = corpus("canterbury/sum")[:3000] + corpus("canterbury/alice29.txt")[:1500] + corpus("canterbury/sum")[:3000]
    stats: dict = {}
    one = policy.compress(data, session, stats=stats)
    assert stats.get("fallback") and nacrith.compress(data, session=session) == one
    c = NacrithCompressor(session=session)
    assert b"".join(c.compress(data[i:i + 999]) for i in range(0, len(data), 999)) + c.flush() == one
    with nacrith.open(tmp_path / "g.nc", "wb", session=session) as f:
        f.write(data)
    assert (tmp_path / "g.nc").read_bytes() == one


def test_file_object_semantics(session, text, tmp_path):
    p = tmp_path / "s.nc"
    with nacrith.open(p, "wb", session=session, **SMALL) as f:
        for call in (f.read1, f.readline, f.peek, lambda: next(iter(f)), f.read):
            with pytest.raises(io.UnsupportedOperation):
                call()
        f.write(text)
    f = nacrith.open(p, "rb", session=session)
    f.close()
    with pytest.raises(ValueError):
        f.peek()
    with pytest.raises(ValueError):
        nacrith.open(tmp_path / "z.nc", "wb", session=session, frame_size=0)
    assert not (tmp_path / "z.nc").exists()
    with pytest.raises(TypeError, match="window must be a nacrith.Window"):
        nacrith.open(tmp_path / "z.nc", "wb", session=session, window=(1024, 4, 256))
    assert not (tmp_path / "z.nc").exists()


def test_decompressor_max_length_and_needs_input(session, text, blob):
    d = NacrithDecompressor(session=session)
    assert d.needs_input and not d.eof
    first = d.decompress(blob, max_length=100)
    assert first == text[:100] and not d.needs_input and not d.eof
    rest = b""
    while not d.eof:
        rest += d.decompress(b"", max_length=500)
    assert first + rest == text and not d.needs_input
    with pytest.raises(EOFError):
        d.decompress(b"")
    d = NacrithDecompressor(session=session)
    assert d.decompress(blob, max_length=-1) == text and d.eof


def test_open_for_writing_touches_no_existing_file_before_the_model_is_loaded(tmp_path, session):
    """``nacrith.open(existing, "wb", model="missing.gguf")`` emptied the file before the model
    error; now the model and options are checked first, and writing goes through a temporary
    file put in place by close()."""
    p = tmp_path / "keep.nc"
    p.write_bytes(b"precious")
    with pytest.raises(nacrith.ModelNotFoundError):
        nacrith.open(p, "wb", model=tmp_path / "missing.gguf")
    with pytest.raises(ValueError):
        nacrith.open(p, "wb", session=session, frame_size=0)
    assert p.read_bytes() == b"precious"
    f = nacrith.open(p, "wb", session=session)
    f.write(b"new content, not yet in place")
    assert p.read_bytes() == b"precious"  # until close()
    f.close()
    assert nacrith.decompress(p.read_bytes(), session=session) == b"new content, not yet in place"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["keep.nc"]
    with pytest.raises(FileExistsError):
        nacrith.open(p, "xb", session=session)
    with nacrith.open(p, "ab", session=session) as f:
        f.write(b" and more")
    assert nacrith.decompress(p.read_bytes(), session=session) == b"new content, not yet in place and more"


def test_session_argument_types_and_fileno(tmp_path, session):
    with pytest.raises(TypeError):
        nacrith.Session(threads="1")
    with pytest.raises(TypeError):
        nacrith.Session(workers=2.0)
    p = tmp_path / "f.nc"
    p.write_bytes(nacrith.compress(b"abc", session=session))
    with nacrith.open(p, "rb", session=session) as f:
        assert isinstance(f.fileno(), int) and f.read() == b"abc"


def test_padding_after_a_stream_is_rejected_as_documented(session):
    """Zero padding after the end frame is trailing data (as zstd has it; xz's 4-byte stream
    padding is not part of this format): one error naming the count."""
    blob = nacrith.compress(b"abc", session=session)
    with pytest.raises(nacrith.FormatError, match="4 bytes of trailing data"):
        nacrith.decompress(blob + b"\0" * 4, session=session)
