"""The layout the code promises: a pure format layer, and one stream reader whose checks reach
decoding, ``-t``, ``-l`` and seeking alike."""

from __future__ import annotations

import io
import random
import subprocess
import sys

import pytest

from nacrith.format import FRAME_SEEK, SeekEntry, StreamParser, iter_frames, read_seek_table, write_seek_table
from nacrith.errors import FormatError


def test_format_layer_imports_without_numpy_native_or_llama():
    code = ("import sys; import nacrith.format, nacrith.params, nacrith.options; "
            "bad = [m for m in ('numpy', 'nacrith._native', 'llama_cpp', 'zstandard') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _binary_stream(data: bytes, frame: int) -> bytes:
    from nacrith.encoder import StreamWriter, code_frame
    from nacrith.options import Options

    opts = Options(frame_size=frame)
    w = StreamWriter(None, opts)
    out = [w.write(data[a:a + frame], code_frame(None, data[a:a + frame], False, opts))
           for a in range(0, len(data), frame)]
    return b"".join(out) + w.finish()


def _with_seek_table(blob: bytes, entries: list[SeekEntry]) -> bytes:
    """``blob`` with its seek table replaced by one listing ``entries`` (same length)."""
    end = next(f for f in iter_frames(blob) if not hasattr(f, "kind"))
    at = end.seek_offset
    old, stop = read_seek_table(blob, at, at)
    new = write_seek_table(entries)
    assert len(new) == stop - at and blob[at] == FRAME_SEEK
    return blob[:at] + new + blob[stop:]


@pytest.fixture(scope="module")
def stream():
    data = random.Random(7).randbytes(10240)  # incompressible: 3 stored frames
    blob = _binary_stream(data, 4096)
    return data, blob


def test_seek_table_that_lies_is_rejected_by_every_reader(session, stream, tmp_path):
    from nacrith.decoder import SeekIndex, decompress

    data, blob = stream
    parser = StreamParser(blob)
    list(parser)
    entries = parser.seek.entries
    assert len(entries) == 3 and decompress(blob, session) == data
    # swap the sizes of two frames: still a well-formed table, but not this stream's
    lie = [SeekEntry(entries[1].raw_size, entries[0].offset, 0), SeekEntry(entries[0].raw_size, entries[1].offset, 0),
           entries[2]]
    if lie[0].raw_size == entries[0].raw_size:  # equal sizes: move an offset instead
        lie = [entries[0], SeekEntry(entries[1].raw_size, entries[1].offset + 1, 0), entries[2]]
    bad = _with_seek_table(blob, lie)
    with pytest.raises(FormatError, match="seek table at offset .* does not match"):
        decompress(bad, session)
    p = tmp_path / "bad.nc"
    p.write_bytes(bad)
    for flag in ("-t", "-l"):
        r = subprocess.run([sys.executable, "-m", "nacrith", flag, str(p)], capture_output=True, text=True)
        assert r.returncode == 1 and "does not match" in r.stderr, (flag, r.stderr)
    # seeking checks the table against the frames before it trusts it (opening the index)
    with pytest.raises(FormatError, match="does not match"):
        idx = SeekIndex(io.BytesIO(bad))
        for i in range(len(idx.entries)):
            idx.read_frame(session, i)


def test_parser_offsets_are_stream_offsets(stream):
    """Fed in pieces, the parser reports the same stream offsets as over the whole stream, in
    items and in errors."""
    _, blob = stream
    whole = [x.offset for x in StreamParser(blob) if hasattr(x, "raw_size") or hasattr(x, "total_size")]
    p = StreamParser()
    fed = []
    for a in range(0, len(blob), 100):
        p.feed(blob[a:a + 100])
        fed += [x.offset for x in iter(p.next, None) if hasattr(x, "raw_size") or hasattr(x, "total_size")]
    assert fed == whole and len(whole) == 4 and whole[1] > 100
    cut = bytearray(blob)
    cut[whole[1]] = 99  # an unknown frame type at the second frame
    q = StreamParser()
    q.feed(bytes(cut[:whole[1] - 10]))
    while q.next() is not None:
        pass
    q.feed(bytes(cut[whole[1] - 10:]))
    with pytest.raises(FormatError, match=f"unknown frame type 99 at offset {whole[1]}"):
        while q.next() is not None:
            pass
