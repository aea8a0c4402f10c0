"""Command line, with gzip/zstd habits (click).

    nacrith [FILE...]              compress each FILE to FILE.nc (stdin -> stdout when no FILE or -)
    nacrith -d FILE.nc...          decompress to FILE
    nacrith -t FILE.nc...          test integrity, write nothing
    nacrith -l FILE.nc...          list frames, sizes, bpb, model
    nacrith compress|decompress|test|info ...   the same as -z|-d|-t|-l

Inputs are kept unless ``--rm`` (removed only after the output is written and verified).
Outputs go to a temporary file in the target directory, renamed at the end: an error, Ctrl-C or
SIGTERM leaves no partial output and never overwrites an existing file without ``-f``.
Data is streamed frame by frame, so memory stays bounded whatever the input length.
Exit codes as gzip: 0 ok, 1 error, 2 warning. Errors are one line: ``nacrith: FILE: cause``.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import signal
import stat
import sys
import tempfile
import time
from contextlib import contextmanager

import click

from . import __version__
from .container import FRAME_LLM, FRAME_NAMES, VERSION, Frame, LLMParams, StreamParser, read_llm_payload
from .decoder import FrameDecoder
from .policy import GuardedEncoder
from .session import Options, Session
from .params import LLM_ONLY, MIXER_NAMES, EnsembleParams, Window
from .errors import NacrithError

SUFFIX = ".nc"
CHUNK = 1 << 16
_E = EnsembleParams()
_O = Options()


class CliError(Exception):
    """A user-facing failure for one file: printed as one line, exit code 1."""


class CliWarning(Exception):
    """A skipped file (gzip's warning): printed as one line, exit code 2 unless an error occurs."""


_TEMPS: set[str] = set()  # temporary outputs being written
_CURRENT = ["-"]  # the input being processed, for the interrupt message


def _on_signal(signum, frame):
    """SIGINT / SIGTERM: remove the temporary outputs and exit at once, as gzip does. Raising
    KeyboardInterrupt instead is not enough: it waits for the running C call (a llama.cpp batch)
    and is swallowed when it lands in a finaliser, leaving the process compressing on."""
    for tmp in list(_TEMPS):
        try:
            os.unlink(tmp)
        except OSError:
            pass
    os.write(2, f"nacrith: {_CURRENT[0]}: interrupted, no output written\n".encode(errors="replace"))
    os._exit(128 + signum)


@contextmanager
def atomic_output(path: str, force: bool, like: str | None = None):
    """Yield a binary file object; on success it is renamed to ``path``, on error deleted."""
    if os.path.exists(path) and not force:
        raise CliError(f"{path}: already exists (use -f to overwrite)")
    d = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=d)
    except OSError as e:  # name the output, not the temporary file
        raise CliError(f"{path}: {e.strerror or e}") from None
    _TEMPS.add(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if like and like != "-":
            try:
                os.chmod(tmp, os.stat(like).st_mode & 0o777)
            except OSError:
                pass
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise CliError(f"{path}: {e.strerror or e}") from None
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    finally:
        _TEMPS.discard(tmp)


@contextmanager
def _stdout_output():
    yield sys.stdout.buffer
    sys.stdout.buffer.flush()


@contextmanager
def _open_input(name: str):
    if name == "-":
        yield sys.stdin.buffer
        return
    with open(name, "rb") as f:  # _check_paths has refused directories and devices
        yield f


def _check_paths(name: str, out: str | None) -> None:
    """Refuse, before any work, what gzip and zstd refuse: a closed standard stream, an input that
    is not a regular file (a device or FIFO: --rm would delete it, reading may never end), an
    output that is the input itself or an existing non-regular file (-f would replace it).

    Raises: CliError naming the path."""
    if name == "-" and sys.stdin is None:
        raise CliError("-: standard input is closed")
    if out == "-" and sys.stdout is None:
        raise CliError("-: standard output is closed")
    if name != "-" and os.path.exists(name):
        mode = os.stat(name).st_mode
        if stat.S_ISDIR(mode):
            raise CliError(f"{name}: is a directory")
        if not stat.S_ISREG(mode):
            raise CliError(f"{name}: not a regular file -- ignored")
    if out not in (None, "-") and os.path.exists(out):
        if name != "-" and os.path.exists(name) and os.path.samefile(name, out):
            raise CliError(f"{out}: is the input file; refusing to overwrite it")
        if not stat.S_ISREG(os.stat(out).st_mode) and not os.path.isdir(out):
            raise CliError(f"{out}: exists and is not a regular file; refusing to replace it "
                           "(use -c to write to it, or -t to only test)")


def _input_size(name: str) -> int | None:
    try:
        return None if name == "-" else os.path.getsize(name)
    except OSError:
        return None


class _Progress:
    """tqdm bar on stderr (bytes, bytes/s, ETA) when stderr is a terminal or ``--progress``."""

    def __init__(self, total: int | None, desc: str, enabled: bool | None, quiet: bool):
        self.bar = None
        show = (sys.stderr.isatty() if enabled is None else enabled) and not quiet
        if show:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                            delay=0 if enabled else 1.0, file=sys.stderr, leave=False, dynamic_ncols=True)

    def __call__(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Job:
    """Settings of one invocation."""

    def __init__(self, **kw):
        self.__dict__.update(kw)
        self._session = None

    @property
    def session(self) -> Session:
        if self._session is None:
            self._session = Session(self.model, threads=self.threads, workers=self.workers or None,
                                    gpu_layers=self.gpu_layers)
        return self._session

    def options(self) -> Options:
        ens = LLM_ONLY if self.llm_only else EnsembleParams(
            self.ngram_order, self.ngram_bits, self.ngram_kappa, self.bias_lr,
            {v: k for k, v in MIXER_NAMES.items()}[self.mixer], self.mix_lr, self.mix_init, self.skip_bits,
            self.shared_heads)
        return Options(window=Window(self.window, self.sink, self.slide), ensemble=ens,
                       frame_size=self.frame_size, max_lanes=self.lanes, min_lane_tokens=self.lane_tokens)

    def say(self, msg: str) -> None:
        if not self.quiet:
            click.echo(msg, err=True)


def _output_name(job: Job, name: str, mode: str) -> str:
    if job.output:
        return job.output
    if job.to_stdout or name == "-":
        return "-"
    if mode == "z":
        if name.endswith(SUFFIX) and not job.force:
            raise CliWarning(f"{name}: already has {SUFFIX} suffix -- unchanged")
        return name + SUFFIX
    if name.endswith(SUFFIX) and len(name) > len(SUFFIX):
        return name[:-len(SUFFIX)]
    raise CliError(f"{name}: unknown suffix (expected {SUFFIX}); use -o or -c")


def _compress_one(job: Job, name: str, opts: Options) -> None:
    out = _output_name(job, name, "z")
    _check_paths(name, out)
    if out == "-" and sys.stdout.isatty() and not job.force:
        raise CliError("refusing to write compressed data to a terminal (use -f to force)")
    if out != "-" and os.path.exists(out) and not job.force:
        raise CliError(f"{out}: already exists (use -f to overwrite)")
    bar = _Progress(_input_size(name), os.path.basename(name), job.progress, job.quiet)
    enc = GuardedEncoder(job.session, opts, bar)
    n_in = n_out = 0
    digest = hashlib.blake2b(digest_size=16)
    t0 = time.perf_counter()
    sink = _stdout_output() if out == "-" else atomic_output(out, job.force, like=name)
    try:
        with _open_input(name) as src, sink as dst:
            for chunk in iter(lambda: src.read(CHUNK), b""):
                digest.update(chunk)
                n_in += len(chunk)
                blob = enc.feed(chunk)
                dst.write(blob)
                n_out += len(blob)
            blob = enc.finish()
            dst.write(blob)
            n_out += len(blob)
    finally:
        bar.close()
    dt = time.perf_counter() - t0
    if job.rm and name != "-" and out != "-":
        _verify(job, out, digest.digest())
        os.unlink(name)
    if out != "-" or job.verbose:
        bpb = 8 * n_out / n_in if n_in else 0.0
        job.say(f"{name}: {n_in} -> {n_out} bytes, {bpb:.4f} bpb, ratio {n_in / max(n_out, 1):.3f}, "
                f"{dt:.1f} s ({n_in / 1024 / max(dt, 1e-9):.1f} KiB/s)")


def _verify(job: Job, path: str, digest: bytes) -> None:
    """Decode a just-written file and compare with the input's digest (before ``--rm``)."""
    h = hashlib.blake2b(digest_size=16)
    dec = FrameDecoder(job.session)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(dec.feed(chunk))
    dec.close()
    if h.digest() != digest:
        os.unlink(path)
        raise CliError(f"{path}: verification failed, output removed, input kept")


def _decompress_one(job: Job, name: str, write: bool) -> None:
    out = _output_name(job, name, "d") if write else None
    _check_paths(name, out)
    if name == "-" and sys.stdin.isatty():
        raise CliError("refusing to read compressed data from a terminal")
    if out not in (None, "-") and os.path.exists(out) and not job.force:
        raise CliError(f"{out}: already exists (use -f to overwrite)")
    bar = _Progress(_declared_size(name), os.path.basename(name), job.progress, job.quiet)
    dec = FrameDecoder(job.session, bar)
    n_in = n_out = 0
    t0 = time.perf_counter()
    if out is None:
        sink = _null_output()
    elif out == "-":
        sink = _stdout_output()
    else:
        sink = atomic_output(out, job.force, like=name)
    try:
        with _open_input(name) as src, sink as dst:
            while True:
                chunk = src.read(CHUNK)
                if not chunk:
                    break
                n_in += len(chunk)
                data = dec.feed(chunk)
                if dec.eof and dec.unused_data:
                    raise NacrithError(f"{len(dec.unused_data)} bytes of trailing data after the end frame")
                if data:
                    dst.write(data)
                    n_out += len(data)
            if n_in == 0:
                raise NacrithError("empty input: not a nacrith stream")
            dec.close()
    finally:
        bar.close()
    dt = time.perf_counter() - t0
    if write and job.rm and name != "-" and out != "-":
        os.unlink(name)
    if not write:
        job.say(f"{name}: OK ({n_out} bytes)")
    elif out != "-" or job.verbose:
        job.say(f"{name}: {n_in} -> {n_out} bytes in {dt:.1f} s "
                f"({n_out / 1024 / max(dt, 1e-9):.1f} KiB/s), checksums ok")


@contextmanager
def _null_output():
    class _Null:
        def write(self, b):
            return len(b)

    yield _Null()


def _declared_size(name: str) -> int | None:
    """Original size from the end frame of a seekable input (for the progress bar)."""
    if name == "-":
        return None
    try:
        from .container import END_FRAME, read_end

        with open(name, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if size < END_FRAME.size:
                return None
            f.seek(size - END_FRAME.size)
            return read_end(f.read(END_FRAME.size), 0)[0].total_size
    except (OSError, NacrithError):
        return None


def _list_one(job: Job, name: str) -> None:
    _check_paths(name, None)
    if name == "-":
        blob = sys.stdin.buffer.read()
    else:
        with open(name, "rb") as f:  # mapped, not read: listing a huge file stays small in memory
            blob = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if os.path.getsize(name) else b""
    parser = StreamParser(blob)
    items = list(parser)  # checks the structure (and the seek table) before printing
    if parser.unused_data:
        raise NacrithError(f"{len(parser.unused_data)} bytes of trailing data after the end frame")
    end = parser.end
    data_frames = [x for x in items if isinstance(x, Frame)]
    header = parser.header
    click.echo(f"file:        {name}")
    click.echo(f"format:      nacrith stream v{VERSION}, frame size {header.frame_size} bytes")
    for p in items:
        if isinstance(p, LLMParams):
            w = p.window
            click.echo(f"model:       {p.model_name} sha256 {p.model_id.hex()}...")
            click.echo(f"backend:     {p.backend} (id {p.backend_id.hex()})")
            if p.writer:
                click.echo(f"writer:      {p.writer}")
            click.echo(f"window:      {w.size} tokens (sink {w.sink}, slide {w.slide})")
            click.echo(f"ensemble:    {p.ensemble.describe()}")
    click.echo(f"original:    {end.total_size} bytes, blake2b-64 {end.checksum.hex()}")
    bpb = 8 * len(blob) / end.total_size if end.total_size else 0.0
    click.echo(f"compressed:  {len(blob)} bytes, {bpb:.4f} bpb, ratio {end.total_size / max(len(blob), 1):.3f}")
    click.echo(f"frames:      {len(data_frames)}{' (with seek table)' if end.seek_offset else ''}")
    for fr in data_frames:
        extra = ""
        if fr.kind == FRAME_LLM:
            counts, _ = read_llm_payload(fr.payload, fr.raw_size, fr.offset)
            extra = f", {len(counts)} lanes, {sum(counts)} tokens"
        click.echo(f"  @{fr.offset:<10} {FRAME_NAMES[fr.kind]:6} {fr.raw_size:>10} -> {len(fr.payload):>10} "
                   f"bytes, {8 * len(fr.payload) / fr.raw_size:.4f} bpb, checksum {fr.checksum.hex()}{extra}")


def run(job: Job, mode: str, files: list[str]) -> None:
    """Process every input in ``mode`` (z, d, t, l); exit 0, 1 (some error) or 2 (warnings only)."""
    files = list(files) or ["-"]
    if job.output and len(files) > 1:
        raise click.UsageError("-o/--output takes a single input file")
    if mode == "z":
        try:
            opts = job.options()
        except ValueError as e:
            raise click.UsageError(str(e))
    status = 0
    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for name in files:
            _CURRENT[0] = name
            try:
                if mode == "z":
                    _compress_one(job, name, opts)
                elif mode == "d":
                    _decompress_one(job, name, write=True)
                elif mode == "t":
                    _decompress_one(job, name, write=False)
                else:
                    _list_one(job, name)
            except KeyboardInterrupt:
                click.echo(f"nacrith: {name}: interrupted, no output written", err=True)
                sys.exit(130)
            except CliWarning as e:
                if not job.quiet:
                    click.echo(f"nacrith: {e}", err=True)
                status = max(status, 2) if status != 1 else 1
            except CliError as e:
                click.echo(f"nacrith: {e}", err=True)
                status = 1
            except NacrithError as e:
                click.echo(f"nacrith: {name}: {e}", err=True)
                status = 1
            except OSError as e:
                click.echo(f"nacrith: {e.filename or name}: {e.strerror or e}", err=True)
                status = 1
            except MemoryError:
                click.echo(f"nacrith: {name}: out of memory", err=True)
                status = 1
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if job._session is not None:
            job._session.close()
    sys.exit(status)


def _options(f):
    opts = [
        click.argument("files", nargs=-1, type=click.Path(allow_dash=True)),
        click.option("-c", "--stdout", "to_stdout", is_flag=True, help="Write to standard output, keep inputs."),
        click.option("-o", "--output", metavar="PATH", help="Output file (single input)."),
        click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs; compress .nc files too."),
        click.option("-k", "--keep", is_flag=True, help="Keep inputs (the default)."),
        click.option("--rm", is_flag=True, help="Remove each input after its output is written and verified."),
        click.option("-q", "--quiet", is_flag=True, help="No summaries, warnings or progress."),
        click.option("-v", "--verbose", is_flag=True, help="Summaries for standard output too."),
        click.option("--progress/--no-progress", default=None,
                     help="Progress bar on stderr (default: when stderr is a terminal)."),
        click.option("-m", "--model", metavar="GGUF", default=None,
                     help="GGUF model (default: $NACRITH_MODEL, then the embedded SmolLM2-135M)."),
        click.option("-T", "--workers", type=click.IntRange(0, 256), default=None,
                     help="Worker processes, each with its own context (0 or unset: from the cores)."),
        click.option("--threads", type=click.IntRange(1, 1024), default=None,
                     help="llama.cpp threads per worker (default: cores / workers)."),
        click.option("--gpu-layers", type=click.IntRange(-1, 10000), default=None,
                     help="Layers offloaded to a GPU backend (-1: all; default: all if the build has one)."),
        # compression settings (recorded in the stream; decompression needs none)
        click.option("--lanes", type=click.IntRange(1, 4096), default=_O.max_lanes, show_default=True,
                     help="Most lanes per frame (decoded together, one token per lane per step)."),
        click.option("--lane-tokens", type=click.IntRange(1), default=_O.min_lane_tokens, show_default=True,
                     help="Fewest tokens per lane."),
        click.option("--window", type=click.IntRange(8, 1 << 20), default=_O.window.size, show_default=True,
                     help="KV-cache window per lane, tokens."),
        click.option("--sink", type=click.IntRange(1), default=_O.window.sink, show_default=True,
                     help="Leading tokens never evicted from the window."),
        click.option("--slide", type=click.IntRange(1), default=_O.window.slide, show_default=True,
                     help="Tokens evicted at once when the window is full."),
        click.option("--frame-size", type=click.IntRange(1, 1 << 30), default=_O.frame_size, show_default=True,
                     help="Most input bytes per frame."),
        click.option("--llm-only", is_flag=True, help="Turn every ensemble head off."),
        click.option("--ngram-order", type=click.IntRange(0, 8), default=_E.ngram_order, show_default=True,
                     help="Highest token n-gram order (0: n-gram head off)."),
        click.option("--ngram-bits", type=click.IntRange(4, 26), default=_E.ngram_bits, show_default=True,
                     help="log2 hashed contexts per n-gram order (memory per lane: order x 2^bits x 72 B)."),
        click.option("--ngram-kappa", type=click.FloatRange(min=0, min_open=True), default=_E.ngram_kappa,
                     show_default=True, help="n-gram interpolation constant: lambda = c / (c + kappa)."),
        click.option("--bias-lr", type=click.FloatRange(0, 1, max_open=True), default=_E.bias_lr,
                     show_default=True, help="Learning rate of the log-space bias head (0: off)."),
        click.option("--mixer", type=click.Choice(["linear", "geometric"]), default=MIXER_NAMES[_E.mixer],
                     show_default=True, help="Context mixer: linear (Hedge) or geometric (log-linear)."),
        click.option("--mix-lr", type=click.FloatRange(0, 10), default=_E.mix_lr, show_default=True,
                     help="Mixer learning rate."),
        click.option("--mix-init", type=click.FloatRange(0, 1), default=_E.mix_init, show_default=True,
                     help="Initial LLM weight of the mixer."),
        click.option("--skip-bits", type=click.FloatRange(0, 64, max_open=True), default=_E.skip_bits,
                     show_default=True, help="Skip the LLM when the n-gram entropy is below this (0: never)."),
        click.option("--shared-heads/--lane-heads", default=_E.shared_heads, show_default=True,
                     help="The lanes of a frame share one set of ensemble heads, or each lane has its own."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _job(kw: dict) -> tuple[Job, list[str]]:
    files = kw.pop("files")
    kw.pop("keep")
    return Job(**kw), files


class _Main(click.Group):
    """``nacrith ARGS``: a subcommand when ARGS starts with one, else the gzip-style command."""

    def parse_args(self, ctx, args):
        if args and args[0] in self.commands:
            return super().parse_args(ctx, args)
        if args and args[0] in ("-h", "--help", "-V", "--version"):
            return super().parse_args(ctx, args)
        return super().parse_args(ctx, ["gzip"] + list(args))

    def format_usage(self, ctx, formatter):
        formatter.write_usage("nacrith", "[-d|-z|-t|-l] [OPTIONS] [FILE]...  |  nacrith COMMAND ...")


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="nacrith")
def main():
    """nacrith: lossless compression with a small language model (llama.cpp) and an arithmetic
    coder. Used like gzip: nacrith FILE compresses to FILE.nc, nacrith -d FILE.nc restores FILE.
    Run "nacrith gzip --help" for every option."""


@main.command("gzip", hidden=False, short_help="gzip-style use: nacrith [-d|-z|-t|-l] FILE...")
@click.option("-z", "--compress", "mode", flag_value="z", default=True, help="Compress (default).")
@click.option("-d", "--decompress", "mode", flag_value="d", help="Decompress.")
@click.option("-t", "--test", "mode", flag_value="t", help="Test integrity (decode, write nothing).")
@click.option("-l", "--list", "mode", flag_value="l", help="List frames, sizes, bpb, model.")
@_options
def gzip_cmd(mode, **kw):
    """Compress (default), decompress (-d), test (-t) or list (-l) FILEs; stdin/stdout when no
    FILE or -."""
    job, files = _job(kw)
    run(job, mode, files)


@main.command()
@_options
def compress(**kw):
    """Compress FILE(s) to FILE.nc (stdin when FILE is - or absent)."""
    job, files = _job(kw)
    run(job, "z", files)


@main.command()
@_options
def decompress(**kw):
    """Decompress FILE.nc to FILE; every checksum is verified before the output is kept."""
    job, files = _job(kw)
    run(job, "d", files)


@main.command()
@_options
def test(**kw):
    """Decompress FILE(s) in memory and verify every checksum; write nothing."""
    job, files = _job(kw)
    run(job, "t", files)


@main.command()
@_options
def info(**kw):
    """Print the parameters and frames of FILE.nc without decoding (same as -l)."""
    job, files = _job(kw)
    run(job, "l", files)


if __name__ == "__main__":
    main()
