"""The command line's drivers: compress, decompress, test or list each input (``run``), each
checked and reported on its own (a bad one does not stop the others). Exit codes as gzip: 0 ok,
1 error, 2 warning.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import time

import click

from ..decoder import ConcatDecoder, SeekIndex
from ..errors import NacrithError
from ..options import Options
from ..policy import GuardedEncoder
from .files import (CHUNK, CURRENT, SUFFIX, CliError, CliWarning, atomic_output, check_input, check_link,
                    check_paths, input_size, inputs, install_signals, null_output, open_input, stdout_output)
from .listing import list_one, rate


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


def _output_name(job, name: str, mode: str) -> str:
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


def _compress_one(job, name: str, opts: Options) -> None:
    st = check_input(name)
    out = _output_name(job, name, "z")
    check_paths(name, st, out, special_ok=out == "-")
    check_link(job, name)
    if out == "-" and sys.stdout.isatty() and not job.force:
        raise CliError("refusing to write compressed data to a terminal (use -f to force)")
    if out != "-" and os.path.exists(out) and not job.force:
        raise CliError(f"{out}: already exists (use -f to overwrite)")
    bar = _Progress(input_size(name), os.path.basename(name), job.progress, job.quiet)
    stats: dict = {}
    enc = GuardedEncoder(job.session, opts, bar, stats)
    _note_schedule(job, enc.options)
    n_in = n_out = 0
    digest = hashlib.blake2b(digest_size=16)
    t0 = time.perf_counter()
    sink = stdout_output() if out == "-" else atomic_output(out, job.force, like=name)
    try:
        with open_input(name) as src, sink as dst:
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
    if stats.get("verify_failed"):
        job.say(f"nacrith: {name}: warning: {stats['verify_failed']} LLM frame(s) did not decode back and "
                "were written as binary frames (the output is correct; please report this model and build)")
    if out != "-" or job.verbose:
        job.say(f"{name}: {n_in} -> {n_out} bytes, {rate(n_out, n_in)}, "
                f"{dt:.1f} s ({n_in / 1024 / max(dt, 1e-9):.1f} KiB/s)"
                + (f", {stats.get('verified', 0)} LLM frame(s) verified" if opts.verify and job.verbose else ""))


def _note_schedule(job, opts: Options) -> None:
    """With -v, say once why the slower lockstep schedule is used (the probe's verdict)."""
    if not job.verbose or job._noted or opts.schedule != "lockstep":
        return
    from ..model import ATTENTION_MODES
    from ..probe import describe

    job._noted = True
    v = job.session.verdict(ATTENTION_MODES[opts.attention])
    job.say(f"nacrith: {job.session.model.path.name}: {describe(v)}")


def _check_model(job) -> int:
    """``--check-model GGUF``: the probe's verdict for that model on this build, one line; exit 0
    when it is lossless (either schedule), 1 when it cannot be used for LLM frames."""
    from ..model import ATTENTION_MODES
    from ..probe import describe

    opts = job.session.resolve(Options())
    v = job.session.verdict(ATTENTION_MODES[opts.attention])
    took = f"probed in {v.seconds:.1f} s" if not v.cached else "cached verdict"
    click.echo(f"{job.session.model.path}: {describe(v)} (attention {opts.attention}, "
               f"{'GPU' if job.session.model.n_gpu_layers else 'CPU'}; {took})")
    return 0 if v.lossless else 1


def _verify(job, path: str, digest: bytes) -> None:
    """Decode a just-written file and compare with the input's digest (before ``--rm``)."""
    h = hashlib.blake2b(digest_size=16)
    dec = ConcatDecoder(job.session)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(dec.feed(chunk))
    dec.close()
    if h.digest() != digest:
        os.unlink(path)
        raise CliError(f"{path}: verification failed, output removed, input kept")


def _decompress_one(job, name: str, write: bool) -> None:
    st = check_input(name)
    out = _output_name(job, name, "d") if write else None
    check_paths(name, st, out, special_ok=out in (None, "-"))
    if write:
        check_link(job, name)
    if name == "-" and sys.stdin.isatty():
        raise CliError("refusing to read compressed data from a terminal")
    if out not in (None, "-") and os.path.exists(out) and not job.force:
        raise CliError(f"{out}: already exists (use -f to overwrite)")
    bar = _Progress(_declared_size(name), os.path.basename(name), job.progress, job.quiet)
    dec = ConcatDecoder(job.session, bar)
    n_in = n_out = 0
    trailing = 0  # bytes after the end frame, all counted (however many reads they span)
    zeros = True
    t0 = time.perf_counter()
    if out is None:
        sink = null_output()
    elif out == "-":
        sink = stdout_output()
    else:
        sink = atomic_output(out, job.force, like=name)
    try:
        with open_input(name) as src, sink as dst:
            while True:
                chunk = src.read(CHUNK)
                if not chunk:
                    break
                n_in += len(chunk)
                if dec.trailing:  # not another stream: count the rest without buffering it
                    trailing += len(chunk)
                    zeros = zeros and not chunk.strip(b"\0")
                    continue
                data = dec.feed(chunk)
                if data:
                    dst.write(data)
                    n_out += len(data)
                if dec.trailing:
                    trailing, zeros = len(dec.unused_data), not bytes(dec.unused_data).strip(b"\0")
            if n_in == 0:
                raise NacrithError("empty input: not a nacrith stream")
            dec.close()
            if trailing:
                raise NacrithError(f"{trailing} bytes of trailing data after the end frame"
                                   + (" (all zero bytes)" if zeros else ""))
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


def _declared_size(name: str) -> int | None:
    """Original size from the seek table of a seekable input (for the progress bar)."""
    if name == "-" or input_size(name) is None:  # never open a FIFO or device twice
        return None
    try:
        with open(name, "rb") as f:
            return SeekIndex(f).end.total_size
    except (OSError, NacrithError):
        return None


def usage_error(msg: str):
    """A bad invocation (not a bad file): one line, exit 1, nothing done."""
    click.echo(f"nacrith: {msg}", err=True)
    sys.exit(1)


def run(job, mode: str, files: list[str]) -> None:
    """Process every input in ``mode`` (z, d, t, l); exit 0, 1 (some error) or 2 (warnings only).
    Each input is checked and reported on its own: a bad one does not stop the others."""
    files = list(files) or ["-"]
    if job.output and job.to_stdout:
        usage_error("-c/--stdout and -o/--output exclude each other")
    if job.output and (len(files) > 1 or (job.recursive and os.path.isdir(files[0]))):
        usage_error("-o/--output takes a single input file")
    if job.check_model is not None:
        if job.model not in (None, job.check_model) or list(files) != ["-"]:
            usage_error("--check-model GGUF takes no other model or file")
        job.model = job.check_model
        try:
            sys.exit(_check_model(job))
        except NacrithError as e:
            click.echo(f"nacrith: {job.check_model}: {e}", err=True)
            sys.exit(1)
        finally:
            if job._session is not None:
                job._session.close()
    if mode == "z":
        try:
            opts = job.options()
        except ValueError as e:
            usage_error(str(e))
    if job.gpu_layers:  # refused before any work when the build cannot offload
        try:
            job.session
        except NacrithError as e:
            usage_error(str(e))
    status = 0
    old = install_signals()
    try:
        for name in inputs(job, mode, files):
            if isinstance(name, CliError):
                click.echo(f"nacrith: {name}", err=True)
                status = 1
                continue
            if isinstance(name, CliWarning):
                if not job.quiet:
                    click.echo(f"nacrith: {name}", err=True)
                status = max(status, 2) if status != 1 else 1
                continue
            CURRENT[0] = name
            try:
                if mode == "z":
                    _compress_one(job, name, opts)
                elif mode == "d":
                    _decompress_one(job, name, write=True)
                elif mode == "t":
                    _decompress_one(job, name, write=False)
                else:
                    list_one(job, name)
            except KeyboardInterrupt:
                click.echo(f"nacrith: {name}: interrupted, no output written", err=True)
                sys.exit(130)
            except BrokenPipeError:
                # the reader of standard output went away (nacrith -l f.nc | head -1): stop
                # quietly with the status of a process killed by SIGPIPE, as cat and gzip do
                try:
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                except (OSError, ValueError):
                    pass
                sys.exit(128 + signal.SIGPIPE)
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
