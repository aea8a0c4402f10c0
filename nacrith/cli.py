"""Command line, with gzip/zstd habits (click).

    nacrith [FILE...]              compress each FILE to FILE.nc (stdin -> stdout when no FILE or -)
    nacrith -d FILE.nc...          decompress to FILE
    nacrith -t FILE.nc...          test integrity, write nothing
    nacrith -l FILE.nc...          list frames, sizes, bpb, model
    nacrith compress|decompress|test|info ...   the same as -z|-d|-t|-l

Inputs are kept unless ``--rm`` (removed only after the output is written and verified; of
``--rm`` and ``-k`` the last one given wins). Outputs go to a temporary file in the target
directory, renamed at the end: an error, Ctrl-C, SIGTERM or SIGHUP leaves no partial output and
never overwrites an existing file without ``-f``. An output file gets its input's permissions and
times (the ``.nc`` file its original's, the decompressed file the ``.nc`` file's), as gzip does.
Data is streamed frame by frame, so memory stays bounded whatever the input length.

Each input is checked on its own: a missing or unreadable one is an error, a directory (without
``-r``) or a non-regular file (a FIFO, a device; read only with ``-c``, ``-t`` or ``-l``) a
warning, and the other inputs are still processed. Exit codes as gzip: 0 ok, 1 error, 2 warning.
Errors are one line: ``nacrith: FILE: cause``, bad options too (``nacrith: invalid value ...``).
"""

from __future__ import annotations

import hashlib
import math
import mmap
import os
import re
import signal
import stat
import sys
import tempfile
import time
from contextlib import contextmanager

import click

from . import __version__
from .container import (FRAME_LLM, FRAME_NAMES, MAGIC, MAX_LANES, Frame, LLMParams, StreamParser, offload_name,
                        read_llm_payload)
from .decoder import ConcatDecoder, SeekIndex
from .policy import GuardedEncoder
from .session import DEFAULT_LEVEL, Options, Session
from .params import DEFAULT_ENSEMBLE, LLM_ONLY, MIXER_NAMES, EnsembleParams, Window
from .errors import NacrithError

SUFFIX = ".nc"
CHUNK = 1 << 16
_E = DEFAULT_ENSEMBLE
_O = Options()


class CliError(Exception):
    """A user-facing failure for one file: printed as one line, exit code 1."""


class CliWarning(Exception):
    """A skipped file (gzip's warning): printed as one line, exit code 2 unless an error occurs."""


_TEMPS: set[str] = set()  # temporary outputs being written
_CURRENT = ["-"]  # the input being processed, for the interrupt message


def _on_signal(signum, frame):
    """SIGINT / SIGTERM / SIGHUP: remove the temporary outputs and exit at once, as gzip does. Raising
    KeyboardInterrupt instead is not enough: it waits for the running C call (a llama.cpp batch)
    and is swallowed when it lands in a finaliser, leaving the process compressing on."""
    for tmp in list(_TEMPS):
        try:
            os.unlink(tmp)
        except OSError:
            pass
    os.write(2, f"nacrith: {_CURRENT[0]}: interrupted, no output written\n".encode(errors="replace"))
    os._exit(128 + signum)


_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


def _install_signals() -> dict:
    """Install ``_on_signal``; a signal ignored by the caller (``nohup``, a background job's
    SIGINT) stays ignored, as in gzip. Returns the previous handlers."""
    old = {}
    for s in _SIGNALS:
        prev = signal.getsignal(s)
        if prev is not signal.SIG_IGN:
            old[s] = signal.signal(s, _on_signal)
    return old


# nacrith.decoder's StreamParser names stream offsets in its errors (codec's FrameDecoder named
# offsets in its buffer, which cli.py had to shift)
_StreamDecoder = ConcatDecoder


@contextmanager
def atomic_output(path: str, force: bool, like: str | None = None):
    """Yield a binary file object; on success it is renamed to ``path``, on error deleted.
    ``like``: a file whose permissions, owner and access/modification times the output gets
    (taken before it is read), as gzip, xz and zstd do."""
    if os.path.exists(path) and not force:
        raise CliError(f"{path}: already exists (use -f to overwrite)")
    st = None
    if like and like != "-":
        try:
            st = os.stat(like)
        except OSError:
            pass
    d = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    try:
        name_max = os.pathconf(d, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    # ".NAME.XXXXXXXX.tmp"; an output name too long for that gets a short temporary name
    prefix = "." + base + "." if len(os.fsencode(base)) + 14 <= name_max else ".nacrith."
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=d)
    except OSError as e:  # name the output, not the temporary file
        raise CliError(f"{path}: {e.strerror or e}") from None
    _TEMPS.add(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if st is not None:
            _copy_stat(tmp, st)
        else:  # no file to copy from (standard input): the umask's mode, as open(2) gives
            mask = os.umask(0o022)
            os.umask(mask)
            os.chmod(tmp, 0o666 & ~mask)
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


def _copy_stat(path: str, st: os.stat_result) -> None:
    """Give ``path`` the times, owner and permissions in ``st`` (each as far as allowed)."""
    try:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    except OSError:
        pass
    try:
        os.chown(path, st.st_uid, st.st_gid)
    except OSError:
        pass
    try:
        os.chmod(path, st.st_mode & 0o777)
    except OSError:
        pass


class _WriteAll:
    """A binary file whose ``write`` writes everything or raises: CPython's BufferedWriter returns
    a short count, without raising, when a large write reaches a pipe whose reader has gone
    (``nacrith -dc big.nc | head -c 1``), so the next write is what raises BrokenPipeError."""

    def __init__(self, f):
        self._f = f

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        while view:
            n = self._f.write(view)
            if not n:
                raise BrokenPipeError(32, "Broken pipe")
            view = view[n:]
        return len(data)

    def flush(self) -> None:
        self._f.flush()


@contextmanager
def _stdout_output():
    out = _WriteAll(sys.stdout.buffer)
    yield out
    out.flush()


@contextmanager
def _open_input(name: str):
    if name == "-":
        yield sys.stdin.buffer
        return
    with open(name, "rb") as f:  # _check_input has refused directories (and devices unless allowed)
        yield f


def _check_input(name: str) -> os.stat_result | None:
    """First check of every input, before its output is looked at: it exists, it is not a
    directory, a closed standard input is refused. Returns its stat (None for ``-``).

    Raises: CliError (missing, closed stdin), CliWarning (a directory: gzip's "ignored")."""
    if name == "-":
        if sys.stdin is None:
            raise CliError("-: standard input is closed")
        return None
    try:
        st = os.stat(name)
    except OSError as e:
        raise CliError(f"{name}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise CliWarning(f"{name}: is a directory -- ignored (use -r to recurse)")
    return st


def _check_paths(name: str, st: os.stat_result | None, out: str | None, special_ok: bool) -> None:
    """Refuse, before any work, what gzip and zstd refuse: an input that is not a regular file
    (a device or FIFO: --rm would delete it, reading may never end) unless ``special_ok`` (the
    output is standard output, or nothing is written: gzip reads one with -c), an unreadable
    input, a closed standard output, an output that is the input itself, a directory or an
    existing non-regular file (-f would replace it).

    Raises: CliError naming the path, CliWarning for a skipped non-regular input."""
    if st is not None:
        if not stat.S_ISREG(st.st_mode):
            if not special_ok:
                raise CliWarning(f"{name}: not a regular file -- ignored (use -c to read it)")
        else:
            try:
                open(name, "rb").close()
            except OSError as e:
                raise CliError(f"{name}: {e.strerror or e}") from None
    if out == "-" and sys.stdout is None:
        raise CliError("-: standard output is closed")
    if out not in (None, "-") and os.path.exists(out):
        if os.path.isdir(out):
            raise CliError(f"{out}: is a directory; refusing to replace it (name an output file)")
        if st is not None and os.path.samefile(name, out):
            raise CliError(f"{out}: is the input file; refusing to overwrite it")
        if not stat.S_ISREG(os.stat(out).st_mode):
            raise CliError(f"{out}: exists and is not a regular file; refusing to replace it "
                           "(use -c to write to it, or -t to only test)")


def _input_size(name: str) -> int | None:
    try:
        st = None if name == "-" else os.stat(name)
    except OSError:
        return None
    return st.st_size if st is not None and stat.S_ISREG(st.st_mode) else None


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
        self._noted = False

    @property
    def session(self) -> Session:
        if self._session is None:
            self._session = Session(self.model, threads=self.threads, workers=self.workers or None,
                                    gpu_layers=self.gpu_layers, cluster=self.cluster)
        return self._session

    def options(self) -> Options:
        ens = LLM_ONLY if self.llm_only else EnsembleParams(
            self.ngram_order, self.ngram_bits, self.ngram_kappa, self.bias_lr,
            {v: k for k, v in MIXER_NAMES.items()}[self.mixer], self.mix_lr, self.mix_init, self.skip_bits,
            self.shared_heads, self.match_min, self.match_bits, self.match_lr)
        lv = Options.from_level(self.level)
        w = lv.window
        # a window given by hand is the window of every frame, unless --kv-budget says otherwise
        explicit = self.window is not None or self.sink is not None or self.slide is not None
        budget = self.kv_budget if self.kv_budget is not None else (0 if explicit else lv.kv_budget)
        return Options.from_level(
            self.level, window=Window(self.window or w.size, self.sink or w.sink, self.slide or w.slide),
            ensemble=ens, frame_size=self.frame_size, max_lanes=self.lanes or lv.max_lanes,
            min_lane_tokens=self.lane_tokens or lv.min_lane_tokens, kv_budget=budget, info=self.info,
            verify=bool(self.verify))

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


def _check_link(job: Job, name: str) -> None:
    """A symbolic link is not followed when compressing or decompressing to a file, unless -f
    (gzip and zstd skip it with a warning): --rm would remove the link, the output would sit
    beside the link rather than its target."""
    if name != "-" and not job.force and not job.to_stdout and os.path.islink(name):
        raise CliWarning(f"{name}: is a symbolic link -- ignored (use -f to follow it)")


def _compress_one(job: Job, name: str, opts: Options) -> None:
    st = _check_input(name)
    out = _output_name(job, name, "z")
    _check_paths(name, st, out, special_ok=out == "-")
    _check_link(job, name)
    if out == "-" and sys.stdout.isatty() and not job.force:
        raise CliError("refusing to write compressed data to a terminal (use -f to force)")
    if out != "-" and os.path.exists(out) and not job.force:
        raise CliError(f"{out}: already exists (use -f to overwrite)")
    bar = _Progress(_input_size(name), os.path.basename(name), job.progress, job.quiet)
    stats: dict = {}
    enc = GuardedEncoder(job.session, opts, bar, stats)
    _note_schedule(job, enc.options)
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
    if stats.get("verify_failed"):
        job.say(f"nacrith: {name}: warning: {stats['verify_failed']} LLM frame(s) did not decode back and "
                "were written as binary frames (the output is correct; please report this model and build)")
    if out != "-" or job.verbose:
        job.say(f"{name}: {n_in} -> {n_out} bytes, {_rate(n_out, n_in)}, "
                f"{dt:.1f} s ({n_in / 1024 / max(dt, 1e-9):.1f} KiB/s)"
                + (f", {stats.get('verified', 0)} LLM frame(s) verified" if opts.verify and job.verbose else ""))


def _note_schedule(job: Job, opts: Options) -> None:
    """With -v, say once why the slower lockstep schedule is used (the probe's verdict)."""
    if not job.verbose or job._noted or opts.schedule != "lockstep":
        return
    from .model import ATTENTION_MODES
    from .probe import describe

    job._noted = True
    v = job.session.verdict(ATTENTION_MODES[opts.attention])
    job.say(f"nacrith: {job.session.model.path.name}: {describe(v)}")


def _check_model(job: Job) -> int:
    """``--check-model GGUF``: the probe's verdict for that model on this build, one line; exit 0
    when it is lossless (either schedule), 1 when it cannot be used for LLM frames."""
    from .model import ATTENTION_MODES
    from .probe import describe

    opts = job.session.resolve(Options())
    v = job.session.verdict(ATTENTION_MODES[opts.attention])
    took = f"probed in {v.seconds:.1f} s" if not v.cached else "cached verdict"
    click.echo(f"{job.session.model.path}: {describe(v)} (attention {opts.attention}, "
               f"{'GPU' if job.session.model.n_gpu_layers else 'CPU'}; {took})")
    return 0 if v.lossless else 1


def _rate(compressed: int, original: int) -> str:
    """'B bpb, ratio R' for a report line; '--- bpb, ratio ---' for an empty original, as xz -l."""
    if not original:
        return "--- bpb, ratio ---"
    return f"{8 * compressed / original:.4f} bpb, ratio {original / max(compressed, 1):.3f}"


def _verify(job: Job, path: str, digest: bytes) -> None:
    """Decode a just-written file and compare with the input's digest (before ``--rm``)."""
    h = hashlib.blake2b(digest_size=16)
    dec = _StreamDecoder(job.session)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(dec.feed(chunk))
    dec.close()
    if h.digest() != digest:
        os.unlink(path)
        raise CliError(f"{path}: verification failed, output removed, input kept")


def _decompress_one(job: Job, name: str, write: bool) -> None:
    st = _check_input(name)
    out = _output_name(job, name, "d") if write else None
    _check_paths(name, st, out, special_ok=out in (None, "-"))
    if write:
        _check_link(job, name)
    if name == "-" and sys.stdin.isatty():
        raise CliError("refusing to read compressed data from a terminal")
    if out not in (None, "-") and os.path.exists(out) and not job.force:
        raise CliError(f"{out}: already exists (use -f to overwrite)")
    bar = _Progress(_declared_size(name), os.path.basename(name), job.progress, job.quiet)
    dec = _StreamDecoder(job.session, bar)
    n_in = n_out = 0
    trailing = 0  # bytes after the end frame, all counted (however many reads they span)
    zeros = True
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


@contextmanager
def _null_output():
    class _Null:
        def write(self, b):
            return len(b)

    yield _Null()


def _declared_size(name: str) -> int | None:
    """Original size from the seek table of a seekable input (for the progress bar)."""
    if name == "-" or _input_size(name) is None:  # never open a FIFO or device twice
        return None
    try:
        with open(name, "rb") as f:
            return SeekIndex(f).end.total_size
    except (OSError, NacrithError):
        return None


def _list_one(job: Job, name: str) -> None:
    st = _check_input(name)
    _check_paths(name, st, None, special_ok=True)
    if name == "-":
        blob = sys.stdin.buffer.read()
    elif not stat.S_ISREG(st.st_mode):
        with open(name, "rb") as f:
            blob = f.read()
    else:
        with open(name, "rb") as f:  # mapped, not read: listing a huge file stays small in memory
            blob = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if os.path.getsize(name) else b""
    view, start, n = memoryview(blob), 0, 0
    while True:  # concatenated streams, one after the other
        parser = StreamParser(view[start:])
        items: list = []
        error = None
        try:  # the structure (and the seek table) is checked as it is read
            for item in parser:
                items.append(item)
        except NacrithError as e:
            error = e
        n += 1
        if n == 1 and parser.header is None:  # not even a header: only the error, as xz -l
            raise error
        if n == 1:
            click.echo(f"file:        {name}")
        rest = len(view) - start - len(parser.unused_data)  # bytes of this stream
        if parser.header is not None:  # what was read before a damage is listed, then the error
            _list_stream(parser, items, start, n, rest if error is None else None)
        if error is not None:
            raise error
        if not parser.unused_data:
            break
        if bytes(parser.unused_data[:len(MAGIC)]) != MAGIC:
            raise NacrithError(f"{len(parser.unused_data)} bytes of trailing data after the end frame")
        start += rest


def _params_fields(p: LLMParams) -> dict[str, str]:
    """The lines of a params block as ``-l`` lists them, label -> value, in listing order (no
    device line in version 1, no writer line when none is recorded)."""
    w = p.window
    algo = f" (algorithm {p.algorithm})" if p.version >= 2 else ""
    fields = {"model": f"{p.model_label} sha256 {p.model_id.hex()}...",
              "backend": f"{p.backend_label} (id {p.backend_id.hex()})",
              "device": offload_name(p.offload) if p.version >= 2 else "",
              "writer": p.writer,
              "window": f"{w.size} tokens (sink {w.sink}, slide {w.slide})",
              "schedule": "lockstep (one token per lane per step on both sides)" if p.schedule else "",
              "ensemble": f"{p.ensemble.describe()}{algo}"}
    return {k: v for k, v in fields.items() if v}


def _list_stream(parser: StreamParser, items: list, start: int, n: int, size: int | None) -> None:
    """The listing of one stream of ``size`` bytes, ``start`` bytes into the file (its ``n``-th);
    ``size`` None: the stream is damaged, ``items`` are what was read before the damage."""
    end = parser.end
    data_frames = [x for x in items if isinstance(x, Frame)]
    header = parser.header
    content = 0
    if n > 1 or start:
        click.echo(f"stream {n}:    at offset {start}")
    click.echo(f"format:      nacrith stream v{header.version}, frame size {header.frame_size} bytes")
    # version 2: the header's params, then any params frame; a params frame lists only what it
    # changes (per-frame windows change just the window), with the data frame it applies from
    shown: dict[str, str] | None = None
    n_frames = 0
    for p in [header.params] + items:
        if isinstance(p, Frame):
            n_frames += 1
        if not isinstance(p, LLMParams):
            continue
        fields = _params_fields(p)
        if shown is None:
            for label, value in fields.items():
                click.echo(f"{label + ':':<13}{value}")
        else:
            changed = [f"{label} {value}" for label, value in fields.items() if shown.get(label) != value]
            changed += [f"no {label}" for label in shown if label not in fields]
            click.echo(f"{'params:':<13}from frame {n_frames + 1}: {'; '.join(changed) or 'unchanged'}")
        shown = fields
    if end is not None:
        click.echo(f"original:    {end.total_size} bytes, blake2b-64 {end.checksum.hex()}")
    lines = []
    for fr in data_frames:
        extra = ""
        body = len(fr.payload)
        if fr.kind == FRAME_LLM:
            try:
                counts, streams = read_llm_payload(fr.payload, fr.raw_size, fr.offset, fr.version)
            except NacrithError as e:  # listed as far as it goes, then the error
                for line in lines:
                    click.echo(line)
                raise e
            extra = f", {len(counts)} lanes, {sum(counts)} tokens"
            body = sum(len(x) for x in streams)
        content += body
        lines.append(f"  @{start + fr.offset:<10} {FRAME_NAMES[fr.kind]:6} {fr.raw_size:>10} -> {len(fr.payload):>10} "
                     f"bytes, {8 * len(fr.payload) / fr.raw_size:.4f} bpb, checksum {fr.checksum.hex()}{extra}")
    if end is None or size is None:  # a damaged stream: the frames read before the damage
        click.echo(f"frames:      {len(data_frames)} read before the damage")
    else:
        click.echo(f"compressed:  {size} bytes, {_rate(size, end.total_size)}")
        click.echo(f"overhead:    {size - content} bytes (headers, params, lane tables, checksums, end)")
        click.echo(f"frames:      {len(data_frames)}{' (with seek table)' if end.seek_offset else ''}")
    for line in lines:
        click.echo(line)


def _walk(top: str, mode: str):
    """``-r``: the files under directory ``top`` (sorted, symbolic links not followed) that
    ``mode`` works on: compression every regular file not ending in .nc, the others every .nc
    file. Yields paths, and a CliError for a directory that cannot be read."""
    try:
        with os.scandir(top) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
        yield CliError(f"{top}: {e.strerror or e}")
        return
    for e in entries:
        try:
            if e.is_symlink():  # as gzip and zstd: not followed, and said so
                yield CliWarning(f"{e.path}: is a symbolic link -- ignored")
                continue
            if e.is_dir(follow_symlinks=False):
                yield from _walk(e.path, mode)
            elif e.is_file(follow_symlinks=False) and e.name.endswith(SUFFIX) != (mode == "z"):
                yield e.path
        except OSError as err:
            yield CliError(f"{e.path}: {err.strerror or err}")


def _inputs(job: Job, mode: str, files: list[str]):
    for name in files:
        if job.recursive and name != "-" and os.path.isdir(name):
            yield from _walk(name, mode)
        else:
            yield name


def _usage_error(msg: str):
    """A bad invocation (not a bad file): one line, exit 1, nothing done."""
    click.echo(f"nacrith: {msg}", err=True)
    sys.exit(1)


def run(job: Job, mode: str, files: list[str]) -> None:
    """Process every input in ``mode`` (z, d, t, l); exit 0, 1 (some error) or 2 (warnings only).
    Each input is checked and reported on its own: a bad one does not stop the others."""
    files = list(files) or ["-"]
    if job.output and job.to_stdout:
        _usage_error("-c/--stdout and -o/--output exclude each other")
    if job.output and (len(files) > 1 or (job.recursive and os.path.isdir(files[0]))):
        _usage_error("-o/--output takes a single input file")
    if job.check_model is not None:
        if job.model not in (None, job.check_model) or list(files) != ["-"]:
            _usage_error("--check-model GGUF takes no other model or file")
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
            _usage_error(str(e))
    if job.gpu_layers:  # refused before any work when the build cannot offload
        try:
            job.session
        except NacrithError as e:
            _usage_error(str(e))
    status = 0
    old = _install_signals()
    try:
        for name in _inputs(job, mode, files):
            if isinstance(name, CliError):
                click.echo(f"nacrith: {name}", err=True)
                status = 1
                continue
            if isinstance(name, CliWarning):
                if not job.quiet:
                    click.echo(f"nacrith: {name}", err=True)
                status = max(status, 2) if status != 1 else 1
                continue
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


class _Finite(click.FloatRange):
    """FloatRange that also refuses nan and inf (nan passes every range comparison)."""

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv


# compression settings: recorded in the stream, listed apart by "nacrith -h"
_SETTINGS = {"level", "lanes", "lane_tokens", "window", "sink", "slide", "kv_budget", "frame_size", "info", "llm_only", "ngram_order",
             "ngram_bits", "ngram_kappa", "bias_lr", "mixer", "mix_lr", "mix_init", "skip_bits", "shared_heads",
             "match_min", "match_bits", "match_lr"}


def _options(f):
    opts = [
        # files are checked one by one in run(): click.Path(readable=True) would end the whole
        # run with a usage error on the first unreadable one
        click.argument("files", nargs=-1, type=click.Path(allow_dash=True, readable=False)),
        click.option("-c", "--stdout", "to_stdout", is_flag=True,
                     help="Write to standard output, keep inputs (reads a FIFO or device too)."),
        click.option("-o", "--output", metavar="PATH", help="Output file (single input; not with -c)."),
        click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs; compress .nc files too."),
        # one parameter, so that of --rm and -k the last one given wins (as in zstd)
        click.option("--rm/--keep", " /-k", "rm", default=False,
                     help="Remove each input after its output is written and verified, or keep it "
                          "(the default); the last one given wins."),
        click.option("-r", "--recursive", is_flag=True,
                     help="Recurse into directories: compress every file not ending in .nc; with "
                          "-d, -t or -l, every .nc file."),
        click.option("-q", "--quiet", is_flag=True, help="No summaries, warnings or progress."),
        click.option("-v", "--verbose", is_flag=True, help="Summaries for standard output too."),
        click.option("--progress/--no-progress", default=None,
                     help="Progress bar on stderr (default: when stderr is a terminal)."),
        click.option("-m", "--model", metavar="GGUF", default=None,
                     help="GGUF model (default: $NACRITH_MODEL, then the embedded SmolLM2-135M)."),
        click.option("--check-model", metavar="GGUF", default=None,
                     help="Say whether this model is lossless on this build (batched encoding proven "
                          "bit-exact, or the slower lockstep schedule), in one line, and exit."),
        click.option("--verify", is_flag=True,
                     help="Decode every LLM frame right after coding it; one that does not give its "
                          "input back is written as a binary frame (--rm also decodes the whole output)."),
        click.option("-T", "--workers", type=click.IntRange(0, 256), default=None,
                     help="Frames coded at once: worker processes (or Ray actors), each with its own "
                          "model and context (0 or unset: from the cores, or the cluster)."),
        click.option("--cluster", metavar="ADDRESS", default=None, envvar="NACRITH_CLUSTER",
                     help="Code frames on a Ray cluster: auto, ray://HOST:10001, or local "
                          "(a Ray instance on this machine). Needs nacrith[ray]. [env: NACRITH_CLUSTER]"),
        click.option("--threads", type=click.IntRange(1, 1024), default=None,
                     help="llama.cpp threads per worker (default: cores / workers)."),
        click.option("--gpu-layers", type=click.IntRange(-1, 10000), default=None,
                     help="Layers offloaded to a GPU backend (-1: all; default: all if the build has one)."),
        # compression settings (recorded in the stream; decompression needs none)
        click.option("-1", "level", flag_value=1, default=None,
                     help="Compression level: -1 (or --fast) fastest .. -9 (or --best) best ratio; "
                          f"default -{DEFAULT_LEVEL}. A level is a preset of the window and lane settings "
                          "below, which override it."),
        *[click.option(f"-{n}", "level", flag_value=n, hidden=True) for n in range(2, 10)],
        click.option("--fast", "level", flag_value=1, help="Same as -1."),
        click.option("--best", "level", flag_value=9, help="Same as -9."),
        click.option("--lanes", type=click.IntRange(1, MAX_LANES), default=None,
                     help=f"Most lanes per frame (decoded together, one token per lane per step) "
                          f"[default: the level's; -{DEFAULT_LEVEL}: {_O.max_lanes}]"),
        click.option("--lane-tokens", type=click.IntRange(1), default=None,
                     help=f"Fewest tokens per lane [default: the level's; -{DEFAULT_LEVEL}: {_O.min_lane_tokens}]"),
        click.option("--window", type=click.IntRange(8, 1 << 20), default=None,
                     help=f"KV-cache window per lane, tokens [default: the level's; -{DEFAULT_LEVEL}: {_O.window.size}]"),
        click.option("--sink", type=click.IntRange(1), default=None,
                     help=f"Leading tokens never evicted from the window [default: the level's; "
                          f"-{DEFAULT_LEVEL}: {_O.window.sink}]"),
        click.option("--slide", type=click.IntRange(1), default=None,
                     help=f"Tokens evicted at once when the window is full [default: the level's; "
                          f"-{DEFAULT_LEVEL}: {_O.window.slide}]"),
        click.option("--kv-budget", type=click.IntRange(0, 1 << 20), default=None,
                     help="KV cells a decode step may attend to across a frame's lanes: a frame of few "
                          "lanes gets a window up to this / lanes tokens and the model's training "
                          f"context (0: always --window) [default: the level's; -{DEFAULT_LEVEL}: "
                          f"{_O.kv_budget}; 0 when --window, --sink or --slide is given]"),
        click.option("--frame-size", type=click.IntRange(1, 1 << 30), default=_O.frame_size, show_default=True,
                     help="Most input bytes per frame."),
        click.option("--info", is_flag=True,
                     help="Also record the model name and nacrith version in the stream (~40 bytes)."),
        click.option("--llm-only", is_flag=True, help="Turn every ensemble head off."),
        click.option("--ngram-order", type=click.IntRange(0, 8), default=_E.ngram_order, show_default=True,
                     help="Highest token n-gram order (0: n-gram head off)."),
        click.option("--ngram-bits", type=click.IntRange(4, 26), default=_E.ngram_bits, show_default=True,
                     help="log2 hashed contexts per n-gram order (memory per lane: order x 2^bits x 72 B)."),
        click.option("--ngram-kappa", type=_Finite(min=0, min_open=True), default=_E.ngram_kappa,
                     show_default=True, help="n-gram interpolation constant: lambda = c / (c + kappa)."),
        click.option("--bias-lr", type=_Finite(0, 1, max_open=True), default=_E.bias_lr,
                     show_default=True, help="Learning rate of the log-space bias head (0: off)."),
        click.option("--mixer", type=click.Choice(["linear", "geometric"]), default=MIXER_NAMES[_E.mixer],
                     show_default=True, help="Context mixer: linear (Hedge) or geometric (log-linear)."),
        click.option("--mix-lr", type=_Finite(0, 10), default=_E.mix_lr, show_default=True,
                     help="Mixer learning rate."),
        click.option("--mix-init", type=_Finite(0, 1), default=_E.mix_init, show_default=True,
                     help="Initial LLM weight of the mixer."),
        click.option("--skip-bits", type=_Finite(0, 64, max_open=True), default=_E.skip_bits,
                     show_default=True, help="Skip the LLM when the n-gram entropy is below this (0: never)."),
        click.option("--shared-heads/--lane-heads", default=_E.shared_heads, show_default=True,
                     help="The lanes of a frame share one set of ensemble heads, or each lane has its own."),
        click.option("--match-min", type=click.IntRange(0, 32), default=_E.match_min, show_default=True,
                     help="Match model: tokens hashed to find the longest earlier occurrence (0: off; else >= 2)."),
        click.option("--match-bits", type=click.IntRange(8, 26), default=_E.match_bits, show_default=True,
                     help="log2 hash slots of the match model (8 B each, per frame)."),
        click.option("--match-lr", type=_Finite(0, 1), default=_E.match_lr, show_default=True,
                     help="Learning rate of the match model's boost."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _job(kw: dict) -> tuple[Job, list[str]]:
    files = kw.pop("files")
    return Job(**kw), files


def _words(cmd: click.Command, args: list[str]):
    """(is_option, index, word) for each word of ``args`` before ``--``; options that take a
    value (``--threads 1``) skip it."""
    takes = set()
    for p in cmd.params:
        if isinstance(p, click.Option) and not p.is_flag and not p.count:
            takes.update(p.opts)
    i = 0
    while i < len(args) and args[i] != "--":
        a = args[i]
        option = a.startswith("-") and a != "-"
        yield option, i, a
        i += 2 if option and a in takes else 1


class _Main(click.Group):
    """``nacrith ARGS``: a subcommand when ARGS starts with one, else the gzip-style command."""

    def parse_args(self, ctx, args):
        args = list(args)
        if args and args[0] in self.commands:
            return super().parse_args(ctx, args)
        flags = args[:args.index("--")] if "--" in args else args
        for a in flags:  # "nacrith -d -h" shows the same help as "nacrith -h"
            if a in ("-h", "--help", "-V", "--version"):
                return super().parse_args(ctx, [a])
        words = list(_words(self.commands["gzip"], args))
        for option, i, a in words:  # a level outside 1..9 is one line naming the range
            if option and re.fullmatch(r"-[0-9]+", a) and not 1 <= int(a[1:]) <= 9:
                _usage_error(f"compression level {a} out of range (valid: -1 .. -9, --fast, --best)")
        first = next(((i, a) for option, i, a in words if not option), None)
        if first is not None and first[1] in self.commands:
            # "nacrith --threads 1 test a.nc": the subcommand, wherever the global options stand
            i, a = first
            return super().parse_args(ctx, [a] + args[:i] + args[i + 1:])
        return super().parse_args(ctx, ["gzip"] + args)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """As click's, except that a usage error (a bad option value, an unknown option) is one
        line ``nacrith: ...`` with exit code 1, as gzip has it, not click's usage text and 2."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as e:
            msg = " ".join(e.format_message().split())
            if isinstance(e, click.NoSuchOption):
                msg += " (nacrith -h lists the options)"
            click.echo(f"nacrith: {msg[:1].lower() + msg[1:]}", err=True)
            sys.exit(1)
        except click.Abort:
            click.echo("nacrith: aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def format_usage(self, ctx, formatter):
        formatter.write_usage("nacrith", "[-d|-z|-t|-l] [OPTIONS] [FILE]...  |  nacrith COMMAND ...")

    def format_help(self, ctx, formatter):
        """Every option of the gzip-style command, then the subcommands."""
        self.format_usage(ctx, formatter)
        self.format_help_text(ctx, formatter)
        cmd = self.commands["gzip"]
        sub = click.Context(cmd, info_name=ctx.info_name, parent=ctx)
        general, settings = [], []
        help_opt = cmd.get_help_option(sub)  # the group's -h is listed instead
        for p in cmd.get_params(sub):
            rec = p.get_help_record(sub) if isinstance(p, click.Option) and p is not help_opt else None
            if rec:
                (settings if p.name in _SETTINGS else general).append(rec)
        general += [r for p in self.get_params(ctx) if (r := p.get_help_record(ctx))]  # -V, -h
        with formatter.section("Options"):
            formatter.write_dl(general)
        with formatter.section("Compression settings (recorded in the file; decompression needs none)"):
            formatter.write_dl(settings)
        self.format_commands(ctx, formatter)
        formatter.write_paragraph()
        formatter.write_text("Exit status: 0 ok, 1 error, 2 warning (a file skipped). Errors are one "
                             "line: nacrith: FILE: cause.")


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="nacrith")
def main():
    """nacrith: lossless compression with a small language model (llama.cpp) and an arithmetic
    coder. Used like gzip: nacrith FILE compresses to FILE.nc, nacrith -d FILE.nc restores FILE
    (with the original's permissions and times)."""


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
