"""Command line: ``nacrith compress|decompress|info|test`` (click), gzip/zstd habits.

* ``nacrith compress FILE`` writes ``FILE.nc``; ``nacrith decompress FILE.nc`` writes ``FILE``.
* ``-o/--output``, ``-c/--stdout``, ``-f/--force`` (never overwrite without it), inputs kept
  unless ``--rm``; ``-`` (or no FILE) is stdin.
* Outputs are written to a temporary file in the target directory and renamed at the end, so an
  error or Ctrl-C leaves no partial output.
* Errors are one line, ``nacrith: FILE: cause``, exit code 1; no tracebacks.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from contextlib import contextmanager

import click

from . import __version__
from .codec import Options, Session, compress as _compress, decompress as _decompress, iter_frames
from .container import FRAME_LLM, FRAME_NAMES, read_header, read_llm_payload
from .ensemble import LLM_ONLY, MIXER_NAMES, EnsembleParams
from .errors import NacrithError
from .lanes import Window

SUFFIX = ".nc"
_E = EnsembleParams()


class CliError(Exception):
    """A user-facing failure for one file: printed as one line, exit code 1."""


def _die_on_signal(signum, frame):
    raise KeyboardInterrupt


@contextmanager
def atomic_output(path: str, force: bool, like: str | None = None):
    """Yield a binary file object; on success it is renamed to ``path``, on error deleted."""
    if os.path.exists(path) and not force:
        raise CliError(f"{path}: already exists (use -f to overwrite)")
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=d)
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
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _read_input(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    if os.path.isdir(name):
        raise CliError(f"{name}: is a directory")
    with open(name, "rb") as f:
        return f.read()


class _Progress:
    """tqdm bar on stderr (bytes, bytes/s, ETA), shown after 1 s when stderr is a terminal."""

    def __init__(self, total: int, desc: str, enabled: bool | None, quiet: bool):
        self.bar = None
        show = (sys.stderr.isatty() if enabled is None else enabled) and not quiet
        if show and total > 0:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                            delay=0 if enabled else 1.0, file=sys.stderr, leave=False,
                            dynamic_ncols=True)

    def __call__(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _session(ctx: click.Context) -> Session:
    obj = ctx.ensure_object(dict)
    if "session" not in obj:
        obj["session"] = Session(obj.get("model"), threads=obj.get("threads"))
    return obj["session"]


def _run(files, fn) -> None:
    """Run ``fn(name)`` for each input, reporting errors per file; exit 1 if any failed."""
    failed = False
    old = signal.signal(signal.SIGTERM, _die_on_signal)
    try:
        for name in files:
            try:
                fn(name)
            except KeyboardInterrupt:
                click.echo(f"nacrith: {name}: interrupted, no output written", err=True)
                sys.exit(130)
            except CliError as e:
                click.echo(f"nacrith: {e}", err=True)
                failed = True
            except NacrithError as e:
                click.echo(f"nacrith: {name}: {e}", err=True)
                failed = True
            except OSError as e:
                click.echo(f"nacrith: {e.filename or name}: {e.strerror or e}", err=True)
                failed = True
            except MemoryError:
                click.echo(f"nacrith: {name}: out of memory", err=True)
                failed = True
    finally:
        signal.signal(signal.SIGTERM, old)
    if failed:
        sys.exit(1)


def _emit(data: bytes, name: str, out_path: str | None, to_stdout: bool, force: bool) -> None:
    if to_stdout or out_path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    with atomic_output(out_path, force, like=name) as f:
        f.write(data)


def _remove_input(name: str, out_path: str | None, rm: bool) -> None:
    if rm and name != "-" and out_path and out_path != "-":
        os.unlink(name)


def _common_files(files, output):
    files = list(files) or ["-"]
    if output and len(files) > 1:
        raise click.UsageError("-o/--output takes a single input file")
    return files


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="nacrith")
def main():
    """nacrith: lossless compression with a small language model (llama.cpp) and an arithmetic coder."""


def _set_model(ctx, param, value):
    ctx.ensure_object(dict)[param.name] = value
    return value


_model_opts = [
    click.option("--model", "-m", metavar="GGUF", default=None, expose_value=False, callback=_set_model,
                 help="GGUF model file (default: $NACRITH_MODEL, then the embedded SmolLM2-135M)."),
    click.option("--threads", type=click.IntRange(1, 1024), default=None, expose_value=False,
                 callback=_set_model, help="llama.cpp threads (default: available cores)."),
]


_out_opts = [
    click.argument("files", nargs=-1, type=click.Path(dir_okay=True, allow_dash=True)),
    click.option("-o", "--output", metavar="PATH", help="Output file (single input)."),
    click.option("-c", "--stdout", "to_stdout", is_flag=True, help="Write to standard output."),
    click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs."),
    click.option("--rm", is_flag=True, help="Remove each input after its output is written."),
    click.option("-q", "--quiet", is_flag=True, help="No summary, no progress."),
    click.option("--progress/--no-progress", default=None,
                 help="Progress bar on stderr (default: when stderr is a terminal)."),
] + _model_opts


def _with_opts(opts):
    def deco(f):
        for o in reversed(opts):
            f = o(f)
        return f
    return deco


@main.command()
@_with_opts(_out_opts)
@click.option("--lanes", type=click.IntRange(1, 4096), default=Options.max_lanes, show_default=True,
              help="Most lanes per frame (decoded together, one token per lane per step).")
@click.option("--lane-tokens", type=click.IntRange(1), default=Options.min_lane_tokens, show_default=True,
              help="Fewest tokens per lane.")
@click.option("--window", type=click.IntRange(8, 1 << 20), default=1024, show_default=True,
              help="KV-cache window per lane, tokens.")
@click.option("--sink", type=click.IntRange(1), default=4, show_default=True,
              help="Leading tokens never evicted from the window.")
@click.option("--slide", type=click.IntRange(1), default=256, show_default=True,
              help="Tokens evicted at once when the window is full.")
@click.option("--frame-size", type=click.IntRange(1, 1 << 30), default=Options.frame_size,
              show_default=True, help="Most input bytes per frame.")
@click.option("--llm-only", is_flag=True, help="Turn every ensemble head off (LLM probabilities only).")
@click.option("--ngram-order", type=click.IntRange(0, 8), default=_E.ngram_order, show_default=True,
              help="Highest token n-gram order (0: n-gram head off).")
@click.option("--ngram-bits", type=click.IntRange(4, 26), default=_E.ngram_bits, show_default=True,
              help="log2 hashed contexts per n-gram order (memory per lane: order x 2^bits x 72 B).")
@click.option("--ngram-kappa", type=click.FloatRange(min=0, min_open=True), default=_E.ngram_kappa,
              show_default=True, help="n-gram interpolation constant: lambda = c / (c + kappa).")
@click.option("--bias-lr", type=click.FloatRange(0, 1, max_open=True), default=_E.bias_lr, show_default=True,
              help="Learning rate of the log-space bias head (0: off).")
@click.option("--mixer", type=click.Choice(["linear", "geometric"]), default=MIXER_NAMES[_E.mixer],
              show_default=True, help="Context mixer: linear (Hedge) or geometric (log-linear).")
@click.option("--mix-lr", type=click.FloatRange(0, 10), default=_E.mix_lr, show_default=True,
              help="Mixer learning rate.")
@click.option("--mix-init", type=click.FloatRange(0, 1), default=_E.mix_init, show_default=True,
              help="Initial LLM weight of the mixer.")
@click.option("--skip-bits", type=click.FloatRange(0, 64, max_open=True), default=_E.skip_bits,
              show_default=True, help="Skip the LLM when the n-gram entropy is below this (0: never).")
@click.pass_context
def compress(ctx, files, output, to_stdout, force, rm, quiet, progress, lanes, lane_tokens, window,
             sink, slide, frame_size, llm_only, ngram_order, ngram_bits, ngram_kappa, bias_lr, mixer,
             mix_lr, mix_init, skip_bits):
    """Compress FILE(s) to FILE.nc (stdin when FILE is - or absent)."""
    files = _common_files(files, output)
    try:
        ens = LLM_ONLY if llm_only else EnsembleParams(
            ngram_order, ngram_bits, ngram_kappa, bias_lr,
            {v: k for k, v in MIXER_NAMES.items()}[mixer], mix_lr, mix_init, skip_bits)
        opts = Options(window=Window(window, sink, slide), ensemble=ens, frame_size=frame_size,
                       max_lanes=lanes, min_lane_tokens=lane_tokens)
    except ValueError as e:
        raise click.UsageError(str(e))

    def one(name):
        out = output or ("-" if to_stdout or name == "-" else name + SUFFIX)
        if out != "-" and os.path.exists(out) and not force:
            raise CliError(f"{out}: already exists (use -f to overwrite)")
        data = _read_input(name)
        session = _session(ctx)
        bar = _Progress(len(data), os.path.basename(name), progress, quiet)
        t0 = time.perf_counter()
        try:
            blob = _compress(data, session, opts, bar)
        finally:
            bar.close()
        dt = time.perf_counter() - t0
        _emit(blob, name, out, to_stdout, force)
        _remove_input(name, out, rm)
        if not quiet:
            bpb = 8 * len(blob) / len(data) if data else 0.0
            click.echo(f"{name}: {len(data)} -> {len(blob)} bytes, {bpb:.4f} bpb, "
                       f"ratio {len(data) / max(len(blob), 1):.3f} in {dt:.1f} s"
                       f" ({len(data) / 1024 / max(dt, 1e-9):.1f} KiB/s)", err=True)

    _run(files, one)


@main.command()
@_with_opts(_out_opts)
@click.pass_context
def decompress(ctx, files, output, to_stdout, force, rm, quiet, progress):
    """Decompress FILE.nc to FILE (stdin when FILE is - or absent). Every checksum is verified."""
    files = _common_files(files, output)

    def one(name):
        if output or to_stdout or name == "-":
            out = output or "-"
        elif name.endswith(SUFFIX) and len(name) > len(SUFFIX):
            out = name[:-len(SUFFIX)]
        else:
            raise CliError(f"{name}: unknown suffix (expected {SUFFIX}); use -o or -c")
        if out != "-" and os.path.exists(out) and not force:
            raise CliError(f"{out}: already exists (use -f to overwrite)")
        blob = _read_input(name)
        total = _declared_size(blob)
        bar = _Progress(total, os.path.basename(name), progress, quiet)
        t0 = time.perf_counter()
        try:
            data = _decompress(blob, _session(ctx), bar)
        finally:
            bar.close()
        dt = time.perf_counter() - t0
        _emit(data, name, out, to_stdout, force)
        _remove_input(name, out, rm)
        if not quiet:
            click.echo(f"{name}: {len(blob)} -> {len(data)} bytes in {dt:.1f} s "
                       f"({len(data) / 1024 / max(dt, 1e-9):.1f} KiB/s), checksums ok", err=True)

    _run(files, one)


def _declared_size(blob: bytes) -> int:
    try:
        return sum(getattr(fr, "raw_size", 0) for fr in iter_frames(blob))
    except NacrithError:
        return 0  # decompress reports the problem


@main.command()
@click.argument("files", nargs=-1, type=click.Path(allow_dash=True))
@click.option("-q", "--quiet", is_flag=True)
@_with_opts(_model_opts)
@click.pass_context
def test(ctx, files, quiet):
    """Decompress FILE(s) in memory and verify every checksum; write nothing."""
    def one(name):
        blob = _read_input(name)
        data = _decompress(blob, _session(ctx))
        if not quiet:
            click.echo(f"{name}: OK ({len(data)} bytes)", err=True)

    _run(list(files) or ["-"], one)


@main.command()
@click.argument("files", nargs=-1, type=click.Path(allow_dash=True))
def info(files):
    """Print the parameters and frames of FILE.nc (model, sizes, bpb, checksums) without decoding."""
    def one(name):
        blob = _read_input(name)
        frames = list(iter_frames(blob))
        end = frames[-1]
        data_frames = frames[:-1]
        header, _ = read_header(blob)
        click.echo(f"file:        {name}")
        click.echo(f"frame size:  {header.frame_size} bytes")
        shown = set()
        for fr in data_frames:
            p = fr.params
            if p is not None and id(p) not in shown:
                shown.add(id(p))
                w = p.window
                click.echo(f"model:       {p.model_name} sha256 {p.model_sha256.hex()}")
                click.echo(f"backend:     {p.backend}")
                click.echo(f"writer:      {p.writer}")
                click.echo(f"window:      {w.size} tokens (sink {w.sink}, slide {w.slide})")
                click.echo(f"ensemble:    {p.ensemble.describe()}")
        click.echo(f"original:    {end.total_size} bytes, blake2b-64 {end.checksum.hex()}")
        bpb = 8 * len(blob) / end.total_size if end.total_size else 0.0
        click.echo(f"compressed:  {len(blob)} bytes, {bpb:.4f} bpb")
        click.echo(f"frames:      {len(data_frames)}")
        for fr in data_frames:
            extra = ""
            if fr.kind == FRAME_LLM:
                counts, _ = read_llm_payload(fr.payload, fr.raw_size, fr.offset)
                extra = f", {len(counts)} lanes, {sum(counts)} tokens"
            click.echo(f"  @{fr.offset:<10} {FRAME_NAMES[fr.kind]:6} {fr.raw_size:>10} -> "
                       f"{len(fr.payload):>10} bytes, {8 * len(fr.payload) / fr.raw_size:.4f} bpb, "
                       f"checksum {fr.checksum.hex()}{extra}")

    _run(list(files) or ["-"], one)


if __name__ == "__main__":
    main()
