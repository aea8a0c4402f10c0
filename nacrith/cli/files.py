"""File handling of the command line, with gzip's and zstd's rules: which inputs are taken
(regular files; directories with ``-r``; symbolic links with ``-f``), atomic outputs (a temporary
file renamed at the end: an error, Ctrl-C, SIGTERM or SIGHUP leaves no partial output and never
overwrites an existing file without ``-f``), outputs that get their input's permissions and times,
and one-line errors (``CliError``) and warnings (``CliWarning``).
"""

from __future__ import annotations

import os
import signal
import stat
import sys
import tempfile
from contextlib import contextmanager

SUFFIX = ".nc"
CHUNK = 1 << 16


class CliError(Exception):
    """A user-facing failure for one file: printed as one line, exit code 1."""


class CliWarning(Exception):
    """A skipped file (gzip's warning): printed as one line, exit code 2 unless an error occurs."""


TEMPS: set[str] = set()  # temporary outputs being written
CURRENT = ["-"]  # the input being processed, for the interrupt message


def on_signal(signum, frame):
    """SIGINT / SIGTERM / SIGHUP: remove the temporary outputs and exit at once, as gzip does. Raising
    KeyboardInterrupt instead is not enough: it waits for the running C call (a llama.cpp batch)
    and is swallowed when it lands in a finaliser, leaving the process compressing on."""
    for tmp in list(TEMPS):
        try:
            os.unlink(tmp)
        except OSError:
            pass
    os.write(2, f"nacrith: {CURRENT[0]}: interrupted, no output written\n".encode(errors="replace"))
    os._exit(128 + signum)


_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


def install_signals() -> dict:
    """Install ``on_signal``; a signal ignored by the caller (``nohup``, a background job's
    SIGINT) stays ignored, as in gzip. Returns the previous handlers."""
    old = {}
    for s in _SIGNALS:
        prev = signal.getsignal(s)
        if prev is not signal.SIG_IGN:
            old[s] = signal.signal(s, on_signal)
    return old


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
    TEMPS.add(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if st is not None:
            copy_stat(tmp, st)
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
        TEMPS.discard(tmp)


def copy_stat(path: str, st: os.stat_result) -> None:
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


class WriteAll:
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
def stdout_output():
    out = WriteAll(sys.stdout.buffer)
    yield out
    out.flush()


@contextmanager
def open_input(name: str):
    if name == "-":
        yield sys.stdin.buffer
        return
    with open(name, "rb") as f:  # _check_input has refused directories (and devices unless allowed)
        yield f


def check_input(name: str) -> os.stat_result | None:
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


def check_paths(name: str, st: os.stat_result | None, out: str | None, special_ok: bool) -> None:
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


def input_size(name: str) -> int | None:
    try:
        st = None if name == "-" else os.stat(name)
    except OSError:
        return None
    return st.st_size if st is not None and stat.S_ISREG(st.st_mode) else None


@contextmanager
def null_output():
    class _Null:
        def write(self, b):
            return len(b)

    yield _Null()


def check_link(job, name: str) -> None:
    """A symbolic link is not followed when compressing or decompressing to a file, unless -f
    (gzip and zstd skip it with a warning): --rm would remove the link, the output would sit
    beside the link rather than its target."""
    if name != "-" and not job.force and not job.to_stdout and os.path.islink(name):
        raise CliWarning(f"{name}: is a symbolic link -- ignored (use -f to follow it)")


def walk(top: str, mode: str):
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
                yield from walk(e.path, mode)
            elif e.is_file(follow_symlinks=False) and e.name.endswith(SUFFIX) != (mode == "z"):
                yield e.path
        except OSError as err:
            yield CliError(f"{e.path}: {err.strerror or err}")


def inputs(job, mode: str, files: list[str]):
    for name in files:
        if job.recursive and name != "-" and os.path.isdir(name):
            yield from walk(name, mode)
        else:
            yield name
