"""The command line, through click's runner and through a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from nacrith import cli
from nacrith.policy import compress

from .conftest import corpus



@pytest.fixture(scope="module")
def text():
    return corpus("canterbury/alice29.txt")[:1200]


class _Shared:
    """The test session, minus close(): the CLI closes the sessions it opens."""

    def __init__(self, s):
        self._s = s

    def __getattr__(self, k):
        return getattr(self._s, k)

    def close(self):
        pass


@pytest.fixture()
def runner(session, monkeypatch):
    # reuse the test session's loaded model instead of loading one per invocation
    monkeypatch.setattr(cli, "Session", lambda *a, **k: _Shared(session))
    return CliRunner()


def test_compress_decompress_files(runner, tmp_path, text):
    src = tmp_path / "a.txt"
    src.write_bytes(text)
    r = runner.invoke(cli.main, ["compress", str(src)])
    assert r.exit_code == 0, r.output
    assert "bpb" in r.stderr and src.exists()  # input kept
    nc = tmp_path / "a.txt.nc"
    assert nc.exists()
    # refuses to overwrite without -f
    r = runner.invoke(cli.main, ["compress", str(src)])
    assert r.exit_code == 1 and "already exists" in r.stderr
    src.unlink()
    r = runner.invoke(cli.main, ["decompress", str(nc)])
    assert r.exit_code == 0, r.output
    assert src.read_bytes() == text
    r = runner.invoke(cli.main, ["info", str(nc)])
    assert r.exit_code == 0 and "llm" in r.stdout and "sha256" in r.stdout
    r = runner.invoke(cli.main, ["test", str(nc)])
    assert r.exit_code == 0 and "OK" in r.stderr
    assert not list(tmp_path.glob(".*tmp"))  # no temp files left behind


def test_output_option_force_and_rm(runner, tmp_path, text):
    src = tmp_path / "b.txt"
    src.write_bytes(text)
    out = tmp_path / "custom.bin"
    assert runner.invoke(cli.main, ["compress", "-q", "-o", str(out), str(src)]).exit_code == 0
    back = tmp_path / "back.txt"
    back.write_bytes(b"old")
    assert runner.invoke(cli.main, ["decompress", "-o", str(back), str(out)]).exit_code == 1
    assert back.read_bytes() == b"old"
    assert runner.invoke(cli.main, ["decompress", "-f", "--rm", "-o", str(back), str(out)]).exit_code == 0
    assert back.read_bytes() == text and not out.exists()


@pytest.mark.parametrize("content,msg", [
    (b"plain text, not ours", "not a nacrith stream"),
    (b"", "not a nacrith stream"),
])
def test_foreign_files_one_line_error(runner, tmp_path, content, msg):
    f = tmp_path / "x.nc"
    f.write_bytes(content)
    r = runner.invoke(cli.main, ["decompress", str(f)])
    assert r.exit_code == 1
    assert r.stderr.count("\n") == 1 and msg in r.stderr and str(f) in r.stderr
    assert not (tmp_path / "x").exists()


def test_corrupt_and_truncated_files(runner, session, tmp_path, text):
    blob = compress(text, session)
    for name, bad in [("trunc.nc", blob[:-5]), ("trunc2.nc", blob[: len(blob) // 2]),
                      ("flip.nc", blob[:-80] + bytes([blob[-80] ^ 0x10]) + blob[-79:])]:  # llm payload
        f = tmp_path / name
        f.write_bytes(bad)
        r = runner.invoke(cli.main, ["decompress", str(f)])
        assert r.exit_code == 1, (name, r.output)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.output
        assert not (tmp_path / name[:-3]).exists()
        assert runner.invoke(cli.main, ["test", str(f)]).exit_code == 1


def test_wrong_model_and_backend_are_refused(runner, session, tmp_path, text):
    from nacrith.backend import fingerprint_id

    blob = compress(text, session)
    sha = bytes.fromhex(session.model.sha256)[:16]
    fid = fingerprint_id(session.fingerprint)
    assert blob.count(sha) == 1 and blob.count(fid) == 1
    for name, bad, msg in [
        ("model.nc", blob.replace(sha, bytes(16), 1), "model"),
        ("backend.nc", blob.replace(fid, bytes(8), 1), "backend"),
    ]:
        f = tmp_path / name
        f.write_bytes(bad)
        r = runner.invoke(cli.main, ["decompress", str(f)])
        assert r.exit_code == 1 and msg in r.stderr, r.stderr
        assert not (tmp_path / name[:-3]).exists()


def test_missing_input_and_unknown_suffix(runner, tmp_path):
    r = runner.invoke(cli.main, ["compress", str(tmp_path / "nope")])
    assert r.exit_code == 1 and "nope" in r.stderr
    f = tmp_path / "plain.txt"
    f.write_bytes(b"x")
    r = runner.invoke(cli.main, ["decompress", str(f)])
    assert r.exit_code == 1 and "suffix" in r.stderr


def test_missing_model_is_one_line(tmp_path):
    f = tmp_path / "t.txt"
    f.write_bytes(b"hello world")
    r = subprocess.run([sys.executable, "-m", "nacrith.cli", "compress", "--model", str(tmp_path / "no.gguf"),
                        str(f)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "model file not found" in r.stderr and "pip install" in r.stderr
    assert r.stderr.count("\n") == 1


def test_pipe_through_real_subprocesses(tmp_path, text):
    env = dict(os.environ)
    c = subprocess.run([sys.executable, "-m", "nacrith.cli", "compress", "-q", "-c"], input=text,
                       capture_output=True, timeout=600, env=env)
    assert c.returncode == 0, c.stderr
    d = subprocess.run([sys.executable, "-m", "nacrith.cli", "decompress", "-q", "-c", "-"], input=c.stdout,
                       capture_output=True, timeout=600, env=env)
    assert d.returncode == 0, d.stderr
    assert d.stdout == text


def test_gzip_style_flags_and_several_files(runner, tmp_path, text):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_bytes(text[:500])
    b.write_bytes(text[500:900])
    r = runner.invoke(cli.main, ["-q", str(a), str(b)])  # default mode: compress
    assert r.exit_code == 0, r.output
    assert (tmp_path / "a.txt.nc").exists() and (tmp_path / "b.txt.nc").exists() and a.exists()
    r = runner.invoke(cli.main, ["-l", str(tmp_path / "a.txt.nc")])
    assert r.exit_code == 0 and "frames:" in r.stdout
    r = runner.invoke(cli.main, ["-t", str(tmp_path / "a.txt.nc"), str(tmp_path / "b.txt.nc")])
    assert r.exit_code == 0 and r.stderr.count("OK") == 2
    r = runner.invoke(cli.main, ["-dc", str(tmp_path / "b.txt.nc")])
    assert r.exit_code == 0 and r.stdout_bytes == text[500:900]
    # compressing an .nc file again is a warning (exit 2), nothing written
    r = runner.invoke(cli.main, [str(tmp_path / "a.txt.nc")])
    assert r.exit_code == 2 and "already has .nc suffix" in r.stderr
    assert not (tmp_path / "a.txt.nc.nc").exists()
    # an error on one file does not stop the others; exit 1
    a.unlink()
    r = runner.invoke(cli.main, ["-d", str(tmp_path / "missing.nc"), str(tmp_path / "a.txt.nc")])
    assert r.exit_code == 1 and a.read_bytes() == text[:500]


def test_rm_removes_input_only_after_verified_write(runner, tmp_path, text):
    a = tmp_path / "r.txt"
    a.write_bytes(text[:300])
    r = runner.invoke(cli.main, ["-q", "--rm", str(a)])
    assert r.exit_code == 0, r.output
    assert not a.exists() and (tmp_path / "r.txt.nc").exists()
    r = runner.invoke(cli.main, ["-d", "-q", "--rm", str(tmp_path / "r.txt.nc")])
    assert r.exit_code == 0 and a.read_bytes() == text[:300] and not (tmp_path / "r.txt.nc").exists()


def test_ensemble_flags_are_recorded_and_decode_without_flags(runner, tmp_path, text):
    src = tmp_path / "e.txt"
    src.write_bytes(text)
    r = runner.invoke(cli.main, ["-q", "--lane-heads", "--ngram-order", "2", "--mixer", "linear",
                                 "--mix-lr", "0.4", "--skip-bits", "1", "--lanes", "2", "--lane-tokens", "40",
                                 str(src)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli.main, ["-l", str(tmp_path / "e.txt.nc")])
    assert r.exit_code == 0
    assert "n-gram 1..2" in r.stdout and "linear mixer lr 0.4" in r.stdout and "skip < 1 bits" in r.stdout
    assert "shared" not in r.stdout
    r = runner.invoke(cli.main, ["-dc", str(tmp_path / "e.txt.nc")])  # no ensemble flags given
    assert r.exit_code == 0 and r.stdout_bytes == text


def test_refuses_input_as_output_devices_fifos_and_names_the_output(runner, tmp_path, text):
    f = tmp_path / "same.txt"
    f.write_bytes(text)
    r = runner.invoke(cli.main, ["-f", "--rm", "-o", str(f), str(f)])  # output is the input
    assert r.exit_code == 1 and "is the input file" in r.stderr and f.read_bytes() == text
    for mode in ([], ["-l"], ["-t"]):
        r = runner.invoke(cli.main, [*mode, str(tmp_path)])
        assert r.exit_code == 1 and r.stderr == f"nacrith: {tmp_path}: is a directory\n"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    r = runner.invoke(cli.main, ["--rm", str(fifo)])  # would block, and --rm would delete it
    assert r.exit_code == 1 and "not a regular file" in r.stderr and fifo.exists()
    r = runner.invoke(cli.main, ["-f", "-o", str(fifo), str(f)])  # -f must not replace a FIFO
    assert r.exit_code == 1 and "not a regular file" in r.stderr and fifo.is_fifo()
    out = tmp_path / "missing-dir" / "x.nc"
    r = runner.invoke(cli.main, ["-o", str(out), str(f)])
    assert r.exit_code == 1 and r.stderr == f"nacrith: {out}: No such file or directory\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe", "same.txt"]


@pytest.mark.parametrize("args, fd", [(["-d"], 0), (["-t"], 0), (["-c", "-"], 1)])
def test_closed_standard_streams_are_one_line_errors(tmp_path, args, fd):
    r = subprocess.run([sys.executable, "-m", "nacrith.cli", *args], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120,
                       preexec_fn=lambda: os.close(fd))
    err = r.stderr.decode()
    assert r.returncode == 1 and err.count("\n") == 1 and "is closed" in err, err
