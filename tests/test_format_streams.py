"""Format version 2 with the real model (issue 19): small-file overhead, mismatches named
exactly, concatenated streams (decoder, CLI, ``open(..., "a")``), ``--gpu-layers`` a build
cannot honour, and a KV cache sized by the frame, not by its window field."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from nacrith import cli
from nacrith.format import (FRAME_LLM, LLMParams, StreamHeader, StreamParser, build_stream, iter_frames,
                               read_llm_payload)
from nacrith.decoder import decompress
from nacrith.errors import ModelMismatchError, NacrithError
from nacrith.llm_frame import encode_llm_frame
from nacrith.params import Window
from nacrith.policy import compress
from nacrith.options import Options
from nacrith.session import Session
from nacrith.stream import open as nc_open

from .conftest import corpus

SMALL = [("xargs.1", "canterbury/xargs.1", None), ("grammar.lsp", "canterbury/grammar.lsp", None),
         ("alice29.txt[:8192]", "canterbury/alice29.txt", 8192)]


def overhead(blob: bytes) -> int:
    """Bytes of ``blob`` that are not lane streams (LLM frames) or payloads (other frames)."""
    content = 0
    for fr in iter_frames(blob):
        if getattr(fr, "kind", None) == FRAME_LLM:
            content += sum(len(s) for s in read_llm_payload(fr.payload, fr.raw_size, fr.offset)[1])
        elif hasattr(fr, "payload"):
            content += len(fr.payload)
    return len(blob) - content


@pytest.mark.parametrize("name,path,cut", SMALL, ids=[s[0] for s in SMALL])
def test_small_file_overhead_is_at_most_40_bytes(session, name, path, cut):
    data = corpus(path)[:cut]
    blob = compress(data, session)
    assert [getattr(f, "kind", None) for f in iter_frames(blob)][:-1] == [FRAME_LLM]
    assert overhead(blob) <= 40, (name, overhead(blob))
    assert decompress(blob, session) == data
    # informational strings only on request
    m = session.model
    assert m.name.encode() not in blob
    with_info = compress(data, session, Options(info=True))
    params = next(iter_frames(with_info)).params
    assert params.model_name == m.label and params.writer.startswith("nacrith ")
    assert decompress(with_info, session) == data


def _with_params(session, data: bytes, **change) -> bytes:
    """A one-LLM-frame stream of ``data`` whose params differ from the session's by ``change``
    (a valid stream: the header check is computed over the changed params)."""
    opts = Options()
    payload = encode_llm_frame(session, data, opts)
    params = dataclasses.replace(session.params(opts), **change)
    return build_stream([(FRAME_LLM, data, payload)], opts.frame_size, params)


def test_mismatches_name_the_exact_setting(session):
    data = corpus("canterbury/alice29.txt")[:400]
    for change, msg in [(dict(model_id=b"\x01" * 16), "pass --model"),
                        (dict(backend_id=b"\x02" * 8), "llama.cpp build"),
                        (dict(offload=5), "--gpu-layers 5")]:
        with pytest.raises(ModelMismatchError, match=msg):
            decompress(_with_params(session, data, **change), session)


def test_gpu_layers_refused_on_a_cpu_only_build(tmp_path):
    from nacrith.backend import supports_gpu_offload

    if supports_gpu_offload():
        pytest.skip("this llama.cpp build has a GPU backend")
    with pytest.raises(NacrithError, match="no GPU backend"):
        Session(gpu_layers=5)
    src = tmp_path / "a.txt"
    src.write_bytes(b"hello world\n" * 20)
    r = CliRunner().invoke(cli.main, ["--gpu-layers", "5", str(src)])
    assert r.exit_code == 1 and r.stderr.count("\n") == 1 and "--gpu-layers 0" in r.stderr, r.stderr
    assert not (tmp_path / "a.txt.nc").exists()


def test_kv_cache_sized_by_the_frame_not_the_window_field(session):
    """A tiny frame whose window field says 2^20 tokens needs a context of its token count."""
    data = corpus("canterbury/alice29.txt")[:300]
    opts = Options(window=Window(1 << 20, 4, 256))
    blob = build_stream([(FRAME_LLM, data, encode_llm_frame(session, data, opts))], opts.frame_size,
                        session.params(opts))
    assert decompress(blob, session) == data
    assert session._ctx.n_ctx_seq <= 256  # not 1,048,576 cells (about 12.8 GB)


def test_cli_decodes_concatenated_streams(session, tmp_path):
    a = corpus("canterbury/alice29.txt")[:700]
    b = bytes(range(256)) * 4
    cat = tmp_path / "ab.nc"
    cat.write_bytes(compress(a, session) + compress(b, session) + compress(a, session))
    r = CliRunner().invoke(cli.main, ["-dc", str(cat)])
    assert r.exit_code == 0 and r.stdout_bytes == a + b + a, r.stderr
    r = CliRunner().invoke(cli.main, ["-l", str(cat)])
    assert r.exit_code == 0 and [ln[:9] for ln in r.stdout.splitlines() if ln.startswith("stream ")] == [
        "stream 2:", "stream 3:"], r.output
    r = CliRunner().invoke(cli.main, ["-d", "-c", "-"], input=cat.read_bytes() + b"junk")
    assert r.exit_code == 1 and "4 bytes of trailing data" in r.stderr


def test_open_append_makes_a_readable_file(session, tmp_path):
    path = tmp_path / "log.nc"
    parts = [b"first line\n" * 30, bytes(range(256)) * 3, corpus("canterbury/alice29.txt")[:500]]
    for p in parts:
        with nc_open(path, "ab", session=session) as f:
            f.write(p)
    whole = b"".join(parts)
    with nc_open(path, "rb", session=session) as f:
        assert f.read() == whole
        f.seek(len(parts[0]) + 10)
        assert f.read(20) == whole[len(parts[0]) + 10:len(parts[0]) + 30]
        assert f.seek(-5, 2) == len(whole) - 5 and f.read() == whole[-5:]


def test_header_params_and_listing(session, tmp_path):
    data = corpus("canterbury/xargs.1")
    blob = compress(data, session)
    header = next(x for x in StreamParser(blob) if isinstance(x, StreamHeader))
    assert header.version == 2 and isinstance(header.params, LLMParams)
    f = tmp_path / "x.nc"
    f.write_bytes(blob)
    out = CliRunner().invoke(cli.main, ["-l", str(f)]).stdout
    assert "SmolLM2-135M-Instruct" in out and "--gpu-layers 0" in out and "overhead:" in out, out


def test_frames_of_few_lanes_get_a_wider_window_recorded_per_frame(session):
    """``Options.kv_budget``: a one-lane frame that outgrows the window gets a wider one (up to
    ``kv_budget`` cells, a power of two), a frame of many lanes keeps the level's, and the stream
    records each frame's window (a params frame when it changes), so the decoder needs nothing."""
    base = Window(64, 4, 16)
    opts = Options(window=base, kv_budget=256, min_lane_tokens=150, frame_size=1200)
    assert opts.frame_window(1, 50) == base  # the lane fits: every wider window codes the same
    assert opts.frame_window(1, 300) == Window(256, 4, 64)
    assert opts.frame_window(2, 300) == Window(128, 4, 32)
    assert opts.frame_window(3, 300) == base  # 256 // 3 = 85 -> 64, not wider
    assert opts.frame_window(1, 300, n_ctx_train=200) == Window(128, 4, 32)
    assert dataclasses.replace(opts, kv_budget=0).frame_window(1, 300) == base
    text = corpus("canterbury/alice29.txt")
    data = text[:1200] + text[20000:20400]  # ~330 tokens: 2 lanes; then ~100 tokens: 1 lane
    blob = compress(data, session, opts)
    windows = [x.window for x in StreamParser(blob) if isinstance(x, LLMParams)]
    header = next(x for x in StreamParser(blob) if isinstance(x, StreamHeader))
    lanes = [len(read_llm_payload(fr.payload, fr.raw_size, fr.offset)[0]) for fr in iter_frames(blob)
             if getattr(fr, "kind", None) == FRAME_LLM]
    assert lanes == [2, 1], lanes
    assert header.params.window == Window(128, 4, 32) and windows == [Window(256, 4, 64)], windows
    assert decompress(blob, session) == data
    assert Options().kv_budget == 8192 and Options.from_level(5).kv_budget == 0
