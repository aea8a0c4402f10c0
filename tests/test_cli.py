"""The command line, through click's runner and through a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from nacrith import cli
from nacrith.cli import options as cli_options
from nacrith.policy import compress
from nacrith.options import Options

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
    monkeypatch.setattr(cli_options, "Session", lambda *a, **k: _Shared(session))
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


def test_wrong_model_and_backend_are_refused(runner, session, tmp_path, text, monkeypatch):
    """Another model or another llama.cpp build is named as such; a corrupted params byte is
    reported as corruption (format version 2: the params are under the header check)."""
    blob = compress(text, session)
    flipped = blob[:12] + bytes([blob[12] ^ 0x01]) + blob[13:]  # the backend preset byte
    for name, bad, env, msg in [
        ("corrupt.nc", flipped, None, "corrupt"),
        ("backend.nc", blob, "another build", "llama.cpp build"),
    ]:
        f = tmp_path / name
        f.write_bytes(bad)
        if env:
            monkeypatch.setenv("NACRITH_BACKEND_FINGERPRINT", env)
        r = runner.invoke(cli.main, ["decompress", str(f)])
        assert r.exit_code == 1 and msg in r.stderr, r.stderr
        assert "another build" not in r.stderr or env
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
    assert "model file not found" in r.stderr and "no.gguf" in r.stderr
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
    for mode in ([], ["-l"], ["-t"]):  # a skipped directory is a warning, as in gzip
        r = runner.invoke(cli.main, [*mode, str(tmp_path)])
        assert r.exit_code == 2 and r.stderr == f"nacrith: {tmp_path}: is a directory -- ignored (use -r to recurse)\n"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    r = runner.invoke(cli.main, ["--rm", str(fifo)])  # would block, and --rm would delete it
    assert r.exit_code == 2 and "not a regular file -- ignored" in r.stderr and fifo.exists()
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


# ---- issue 21: what a gzip/xz/zstd user expects of the command line --------------------------

NACRITH = [sys.executable, "-m", "nacrith"]


def _nacrith(*args, **kw):
    kw.setdefault("timeout", 300)
    return subprocess.run([*NACRITH, *map(str, args)], capture_output=True, **kw)


def _binary(n: int, seed: int = 0) -> bytes:
    import random

    return random.Random(seed).randbytes(n)


def _no_dac_override():
    """preexec_fn: root reads any file; drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the
    bounding set, so that the exec'd process lacks them and a mode-000 file is unreadable."""
    if os.geteuid() == 0:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        for cap in (1, 2):
            if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_bad_inputs_are_reported_one_line_each_and_the_others_are_compressed(tmp_path):
    ok = tmp_path / "ok.xls"
    ok.write_bytes(corpus("canterbury/kennedy.xls")[:20000])
    noread = tmp_path / "noread.xls"
    noread.write_bytes(b"secret")
    noread.chmod(0)
    try:
        probe = subprocess.run([sys.executable, "-c", f"open({str(noread)!r}, 'rb')"],
                               preexec_fn=_no_dac_override, capture_output=True, timeout=60)
    except subprocess.SubprocessError:  # root without CAP_SETPCAP
        pytest.skip("cannot drop CAP_DAC_OVERRIDE here")
    if probe.returncode == 0:
        pytest.skip("cannot make an unreadable file here")
    missing = tmp_path / "missing.xls"
    r = _nacrith("-q", ok, noread, missing, preexec_fn=_no_dac_override)
    assert r.returncode == 1, r.stderr
    assert r.stderr.decode() == (f"nacrith: {noread}: Permission denied\n"
                                 f"nacrith: {missing}: No such file or directory\n")
    assert (tmp_path / "ok.xls.nc").exists() and not (tmp_path / "noread.xls.nc").exists()
    d = _nacrith("-dc", tmp_path / "ok.xls.nc")
    assert d.returncode == 0 and d.stdout == ok.read_bytes()


@pytest.mark.parametrize("opt, value", [
    ("--lanes", "-1"), ("--window", "2000000"), ("--frame-size", "0"), ("--threads", "0"), ("-T", "300"),
    ("--mixer", "foo"), ("--mix-lr", "nan"), ("--mix-init", "inf"),
])
def test_bad_option_values_are_one_line_errors_exit_1(tmp_path, opt, value):
    f = tmp_path / "f.bin"
    f.write_bytes(b"x" * 100)
    r = _nacrith(opt, value, f)
    err = r.stderr.decode()
    assert r.returncode == 1 and err.count("\n") == 1 and err.startswith("nacrith: "), err
    assert opt in err and value in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_unknown_option_and_c_with_o_are_one_line_errors(tmp_path):
    f = tmp_path / "f.bin"
    f.write_bytes(b"x" * 100)
    for args in (["--no-such-option"], ["-c", "-o", tmp_path / "out.nc"]):
        r = _nacrith(*args, f)
        err = r.stderr.decode()
        assert r.returncode == 1 and err.count("\n") == 1 and err.startswith("nacrith: "), err
        assert r.stdout == b""
    assert "-c" in err and "-o" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_directories_and_fifos_are_warnings_exit_2(tmp_path):
    d = tmp_path / "dir"
    d.mkdir()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for args in ([d], ["-d", d], ["-t", d], [fifo], ["-d", tmp_path / "fifo.nc"]):
        if args[-1].name == "fifo.nc":
            os.mkfifo(args[-1])
        r = _nacrith(*args)
        err = r.stderr.decode()
        assert r.returncode == 2 and err.count("\n") == 1, (args, err)
        assert err.startswith(f"nacrith: {args[-1]}: ") and "-- ignored" in err
    # with -q the warning is silent, the exit code stays
    assert _nacrith("-q", d).returncode == 2 and _nacrith("-q", d).stderr == b""


def test_sighup_removes_the_temporary_output(tmp_path):
    import signal
    import time

    src = tmp_path / "big.txt"
    src.write_bytes(corpus("canterbury/alice29.txt")[:4000])
    # SIGHUP at its default disposition in the child: under nohup the caller ignores it, and
    # nacrith (as gzip) keeps a signal its caller ignores ignored
    p = subprocess.Popen([*NACRITH, "-q", "-T", "1", str(src)], stderr=subprocess.PIPE,
                         preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".big.txt.nc.*.tmp")):
            assert p.poll() is None, p.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.005)
        p.send_signal(signal.SIGHUP)
        rc = p.wait(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert rc == 128 + signal.SIGHUP
    assert "interrupted" in p.stderr.read().decode()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["big.txt"]


def test_decompress_missing_input_says_no_such_file_even_if_the_output_exists(tmp_path):
    (tmp_path / "missing").write_bytes(b"keep me")
    nc = tmp_path / "missing.nc"
    for args in (["-d", nc], ["-d", "-f", nc], ["-t", nc], ["-l", nc]):
        r = _nacrith(*args)
        assert r.returncode == 1 and r.stderr.decode() == f"nacrith: {nc}: No such file or directory\n"
    assert (tmp_path / "missing").read_bytes() == b"keep me"


def test_output_directory_is_refused_before_any_work(runner, tmp_path, monkeypatch):
    f = tmp_path / "f.bin"
    f.write_bytes(b"data " * 100)
    out = tmp_path / "outdir"
    out.mkdir()

    def no_work(*a, **k):
        raise AssertionError("the model was needed before -o was checked")

    monkeypatch.setattr(cli_options, "Session", no_work)
    for args in (["-o", str(out)], ["-f", "-o", str(out)], ["-d", "-f", "-o", str(out)]):
        src = str(f) + (".nc" if "-d" in args else "")
        if "-d" in args:
            (tmp_path / "f.bin.nc").write_bytes(b"not needed")
        r = runner.invoke(cli.main, [*args, src])
        assert r.exit_code == 1 and r.stderr.count("\n") == 1, r.output
        assert r.stderr.startswith(f"nacrith: {out}: is a directory") and "use -f" not in r.stderr
    assert list(out.iterdir()) == []


def test_decode_errors_give_stream_offsets_and_count_all_trailing_bytes(runner, tmp_path):
    src = tmp_path / "s.bin"
    src.write_bytes(_binary(12000))
    r = runner.invoke(cli.main, ["-c", "--frame-size", "4096", str(src)])
    assert r.exit_code == 0, r.output
    blob = r.stdout_bytes
    good = tmp_path / "good.nc"
    good.write_bytes(blob)
    listing = runner.invoke(cli.main, ["-l", str(good)]).stdout
    offsets = [int(line.split()[0][1:]) for line in listing.splitlines() if line.strip().startswith("@")]
    assert offsets and offsets[0] > 0  # one frame or several, as the size policy chooses
    # the end frame: its magic is its last bytes
    bad_end = tmp_path / "bad_end.nc"
    bad_end.write_bytes(blob[:-1] + bytes([blob[-1] ^ 0xFF]))
    # the last data frame: an unknown frame type
    bad_type = tmp_path / "bad_type.nc"
    bad_type.write_bytes(blob[:offsets[-1]] + b"\x7f" + blob[offsets[-1] + 1:])
    for f in (bad_end, bad_type):
        listed = runner.invoke(cli.main, ["-l", str(f)])
        assert listed.exit_code == 1 and "offset" in listed.stderr
        # what was read before the damage is listed (as xz -l), then the one-line error
        assert "format:" in listed.stdout and "read before the damage" in listed.stdout
        for mode in ("-t", "-d"):
            r = runner.invoke(cli.main, [mode, str(f)])
            assert r.exit_code == 1 and r.stderr == listed.stderr, (mode, r.stderr, listed.stderr)
    assert f"offset {offsets[-1]}" in runner.invoke(cli.main, ["-t", str(bad_type)]).stderr
    assert "offset 0" not in runner.invoke(cli.main, ["-t", str(bad_end)]).stderr
    # trailing bytes spanning several reads are all counted
    trail = tmp_path / "trail.nc"
    trail.write_bytes(blob + bytes(100000))
    for mode in ("-t", "-d"):
        r = runner.invoke(cli.main, [mode, str(trail)])
        assert r.exit_code == 1 and "100000 bytes of trailing data" in r.stderr, r.stderr
    assert not (tmp_path / "trail").exists()


def test_a_reader_that_closes_the_pipe_early_stops_nacrith_quietly(tmp_path):
    src = tmp_path / "z.bin"
    src.write_bytes(_binary(3000, 7))  # a binary frame: listed without the model
    nc = tmp_path / "z.bin.nc"
    assert _nacrith("-q", src).returncode == 0
    p = subprocess.Popen([*NACRITH, "-l", str(nc)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # the reader is gone before nacrith writes (as `nacrith -l f.nc | head -1`)
    err = p.stderr.read()
    assert p.wait(timeout=120) == 141 and err == b"", err  # 128 + SIGPIPE, as cat and gzip

    # a large write that the reader leaves half read (nacrith -dc big.nc | head -c 1): Python's
    # buffered stdout returns a short count instead of raising; it must still end with 141
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(1 << 21))  # stored frames: decoded without the model
    assert _nacrith("-q", big).returncode == 0
    p = subprocess.Popen([*NACRITH, "-dc", str(big) + ".nc"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.read(1)
    p.stdout.close()
    err = p.stderr.read()
    assert p.wait(timeout=120) == 141 and err == b"", err


def test_rm_and_keep_the_last_one_given_wins(runner, tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(_binary(3000, 1))
    b.write_bytes(_binary(3000, 2))
    assert runner.invoke(cli.main, ["-q", "--rm", "-k", str(a)]).exit_code == 0
    assert runner.invoke(cli.main, ["-q", "-k", "--rm", str(b)]).exit_code == 0
    assert a.exists() and (tmp_path / "a.bin.nc").exists()
    assert not b.exists() and (tmp_path / "b.bin.nc").exists()


def test_help_lists_every_option():
    r = _nacrith("-h")
    out = r.stdout.decode()
    assert r.returncode == 0
    for opt in ("-d, --decompress", "-c, --stdout", "-o, --output", "-f, --force", "-k, --keep", "--rm",
                "-r, --recursive", "-T, --workers", "--lanes", "--frame-size", "--mixer", "-V, --version"):
        assert opt in out, opt
    assert "compress" in out and "decompress" in out  # the subcommands too


def test_outputs_get_the_inputs_mtime_and_permissions(runner, tmp_path):
    src = tmp_path / "m.bin"
    data = _binary(2000, 3)
    src.write_bytes(data)
    src.chmod(0o640)
    os.utime(src, ns=(1_000_000_000_123_456_789, 1_100_000_000_987_654_321))
    assert runner.invoke(cli.main, ["-q", str(src)]).exit_code == 0
    nc = tmp_path / "m.bin.nc"
    st = nc.stat()
    assert st.st_mtime_ns == 1_100_000_000_987_654_321 and st.st_mode & 0o777 == 0o640
    src.unlink()
    os.utime(nc, ns=(1_200_000_000_000_000_000, 1_300_000_000_000_000_000))
    nc.chmod(0o604)
    assert runner.invoke(cli.main, ["-q", "-d", str(nc)]).exit_code == 0
    st = src.stat()
    assert src.read_bytes() == data
    assert st.st_mtime_ns == 1_300_000_000_000_000_000 and st.st_mode & 0o777 == 0o604


def test_output_from_standard_input_follows_the_umask_and_long_names_fit(runner, tmp_path):
    data = _binary(1800, 6)
    out = tmp_path / "s.nc"
    old = os.umask(0o027)
    try:
        r = runner.invoke(cli.main, ["-q", "-o", str(out)], input=data)
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    assert out.stat().st_mode & 0o777 == 0o640  # 0666 & ~umask, as gzip/zstd give
    src = tmp_path / ("L" * 240)  # NAME.nc fits in 255 bytes; its ".NAME.nc.XXXXXXXX.tmp" would not
    src.write_bytes(data)
    r = runner.invoke(cli.main, ["-q", str(src)])
    assert r.exit_code == 0, r.output
    src.unlink()
    assert runner.invoke(cli.main, ["-q", "-d", str(src) + ".nc"]).exit_code == 0
    assert src.read_bytes() == data and not list(tmp_path.glob("*.tmp"))


def test_recursive(runner, tmp_path):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    files = {d / "a.bin": _binary(1500, 4), d / "sub" / "b.bin": _binary(1600, 5)}
    for f, data in files.items():
        f.write_bytes(data)
    r = runner.invoke(cli.main, ["-q", "-r", str(d)])
    assert r.exit_code == 0, r.output
    assert (d / "a.bin.nc").exists() and (d / "sub" / "b.bin.nc").exists()
    (d / "old.nc").write_bytes((d / "a.bin.nc").read_bytes())  # not compressed again
    assert runner.invoke(cli.main, ["-q", "-r", "-f", str(d)]).exit_code == 0
    assert not (d / "old.nc.nc").exists() and not (d / "a.bin.nc.nc").exists()
    r = runner.invoke(cli.main, ["-t", "-r", str(d)])
    assert r.exit_code == 0 and r.stderr.count(": OK") == 3
    for f in files:
        f.unlink()
    r = runner.invoke(cli.main, ["-q", "-d", "-r", "--rm", str(d)])
    assert r.exit_code == 0, r.output
    for f, data in files.items():
        assert f.read_bytes() == data
    assert (d / "old").read_bytes() == files[d / "a.bin"]
    assert not list(d.rglob("*.nc"))


def test_stdin_device_and_fifo_are_read_with_c(tmp_path):
    data = _binary(3000, 6)
    c = _nacrith("-c", "/dev/stdin", input=data)
    assert c.returncode == 0, c.stderr
    d = _nacrith("-dc", "/dev/stdin", input=c.stdout)
    assert d.returncode == 0 and d.stdout == data
    t = _nacrith("-t", "/dev/stdin", input=c.stdout)
    assert t.returncode == 0 and b"OK" in t.stderr
    # without -c (the output would go beside it), a non-regular input is skipped, as in gzip
    r = _nacrith("/dev/stdin", input=data, cwd=tmp_path)
    assert r.returncode == 2 and b"not a regular file -- ignored" in r.stderr and r.stdout == b""


def test_levels_are_flags_like_zstd_and_decode_without_one(runner, tmp_path):
    src = tmp_path / "g.txt"
    data = corpus("canterbury/grammar.lsp")[:700]
    src.write_bytes(data)
    listings = {}
    for flag in ("-1", "--best", "-6"):
        r = runner.invoke(cli.main, ["-q", "-f", "-k", flag, str(src)])
        assert r.exit_code == 0, r.output
        listings[flag] = runner.invoke(cli.main, ["-l", "-v", str(tmp_path / "g.txt.nc")]).stdout
        r = runner.invoke(cli.main, ["-dc", str(tmp_path / "g.txt.nc")])  # no level needed
        assert r.exit_code == 0 and r.stdout_bytes == data
    assert "window:      256 tokens" in listings["-1"] and "window:      4096 tokens" in listings["--best"]
    assert "window:      1024 tokens" in listings["-6"]
    r = runner.invoke(cli.main, ["-q", "-f", "-k", "-9", "--window", "512", "--slide", "128", str(src)])  # options override
    assert r.exit_code == 0
    assert "window:      512 tokens" in runner.invoke(cli.main, ["-l", "-v", str(tmp_path / "g.txt.nc")]).stdout
    assert "--fast" in runner.invoke(cli.main, ["-h"]).stdout


def test_listing_shows_a_params_frame_as_what_it_changes():
    """Per-frame windows write a params frame that changes only the window: ``-l`` lists the
    stream's params once and then that change with the frame it applies from (it used to repeat
    the whole block: model, backend, ensemble...)."""
    nc = os.path.join(os.path.dirname(__file__), "..", "codec", "vectors", "valid", "v2-window-per-frame.txt.nc")
    out = CliRunner().invoke(cli.main, ["-l", "-v", nc])
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert sum(line.startswith("model:") for line in lines) == 1
    assert "window:      128 tokens (sink 4, slide 32)" in lines
    assert "params:      from frame 2: window 256 tokens (sink 4, slide 64)" in lines


def test_empty_input_reports_no_ratio_and_round_trips(runner, tmp_path):
    # as xz -l: an empty original has no bpb or ratio ("---"), not 0.000
    src = tmp_path / "empty"
    src.write_bytes(b"")
    r = runner.invoke(cli.main, ["-k", str(src)])
    assert r.exit_code == 0, r.output
    assert "0 -> " in r.stderr and "--- bpb, ratio ---" in r.stderr
    r = runner.invoke(cli.main, ["-l", str(tmp_path / "empty.nc")])
    assert r.exit_code == 0 and "original:    0 bytes" in r.stdout and "--- bpb, ratio ---" in r.stdout
    src.unlink()
    r = runner.invoke(cli.main, ["-d", str(tmp_path / "empty.nc")])
    assert r.exit_code == 0 and src.read_bytes() == b""


# -- issue: reliability (each of these failed before its fix)

def test_code_points_above_u10ffff_do_not_abort(tmp_path):
    """llama.cpp's tokenizer threw std::invalid_argument on F4 90 80 80 (above U+10FFFF) and the
    process aborted (exit 134, a backtrace, a temporary file left behind)."""
    src = tmp_path / "t.txt"
    data = b"hello \xf4\x90\x80\x80 world\n" + b"and \xf5\x81\x82\x83 more text " * 20
    src.write_bytes(data)
    r = _nacrith("-q", "--threads", "2", src)
    assert r.returncode == 0, r.stderr
    d = _nacrith("-dc", "--threads", "2", f"{src}.nc")
    assert d.returncode == 0 and d.stdout == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt", "t.txt.nc"]


def test_subcommands_after_global_options(runner, tmp_path, text):
    """``nacrith --threads 1 test a.nc`` compressed a file named ``test``; ``nacrith --threads 1
    decompress -c a.nc`` compressed a.nc to standard output."""
    src = tmp_path / "a.txt"
    src.write_bytes(text)
    assert runner.invoke(cli.main, ["-q", str(src)]).exit_code == 0
    blob = (tmp_path / "a.txt.nc").read_bytes()
    r = runner.invoke(cli.main, ["--threads", "1", "test", str(tmp_path / "a.txt.nc")])
    assert r.exit_code == 0 and ": OK" in r.stderr, r.output
    assert not (tmp_path / "test.nc").exists()
    r = runner.invoke(cli.main, ["--threads", "1", "decompress", "-c", str(tmp_path / "a.txt.nc")])
    assert r.exit_code == 0 and r.stdout_bytes == text
    r = runner.invoke(cli.main, ["-q", "--threads", "1", "info", str(tmp_path / "a.txt.nc")])
    assert r.exit_code == 0 and "format:" in r.stdout
    assert (tmp_path / "a.txt.nc").read_bytes() == blob


@pytest.mark.parametrize("level", ["-19", "-10", "-0"])
def test_levels_outside_1_to_9_are_one_line(tmp_path, level):
    r = _nacrith(level, tmp_path / "missing.txt")
    assert r.returncode == 1 and r.stderr.count(b"\n") == 1 and b"-1 .. -9" in r.stderr, r.stderr


def test_symbolic_links_are_skipped_without_f(runner, tmp_path, text):
    real = tmp_path / "real.txt"
    real.write_bytes(text)
    (tmp_path / "link.txt").symlink_to(real)
    r = runner.invoke(cli.main, [str(tmp_path / "link.txt")])
    assert r.exit_code == 2 and "symbolic link -- ignored" in r.stderr
    assert not (tmp_path / "link.txt.nc").exists()
    d = tmp_path / "d"
    d.mkdir()
    (d / "link.txt").symlink_to(real)
    r = runner.invoke(cli.main, ["-r", str(d)])
    assert r.exit_code == 2 and "symbolic link -- ignored" in r.stderr
    r = runner.invoke(cli.main, ["-q", "-f", str(tmp_path / "link.txt")])
    assert r.exit_code == 0 and (tmp_path / "link.txt.nc").exists()


def test_listing_a_damaged_file_shows_what_was_read_before_the_error(runner, session, tmp_path):
    data = corpus("canterbury/alice29.txt")[:900] + bytes(range(256)) * 3 + corpus("canterbury/alice29.txt")[900:1800]
    blob = compress(data, session, Options(frame_size=700))
    bad = bytearray(blob)
    bad[len(bad) - 30] ^= 0xFF  # the seek table / end frame: the frames before it are intact
    p = tmp_path / "bad.nc"
    p.write_bytes(bytes(bad))
    r = runner.invoke(cli.main, ["-l", str(p)])
    assert r.exit_code == 1
    assert "format:" in r.stdout and "@" in r.stdout and "read before the damage" in r.stdout
    assert r.stderr.startswith("nacrith: ") and r.stderr.count("\n") == 1


def test_a_lane_table_of_1000_lanes_is_corrupt(runner, session, tmp_path):
    from nacrith.format import FRAME_LLM, build_stream, varint

    raw = b"a" * 3000
    payload = varint(1000) + b"".join(varint(1) + varint(0) for _ in range(999)) + varint(1)
    blob = build_stream([(FRAME_LLM, raw, payload)], 1 << 20, session.params(Options()))
    p = tmp_path / "lanes.nc"
    p.write_bytes(blob)
    r = runner.invoke(cli.main, ["-t", str(p)])
    assert r.exit_code == 1 and "1000 lanes" in r.stderr and "corrupt" in r.stderr, r.stderr
    assert "could not create" not in r.stderr
