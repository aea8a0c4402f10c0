"""The command line's option table and the settings of one invocation (``Job``).

The compression settings (recorded in the stream) are made from the settings defined beside
their fields (``nacrith.params.setting``: ``Window``, ``EnsembleParams``, ``Options``): flag,
range, help and default are written once, there.
"""

from __future__ import annotations

import math

import click

from ..options import DEFAULT_LEVEL, Options
from ..params import DEFAULT_ENSEMBLE, LLM_ONLY, EnsembleParams, Setting, Window, settings_of
from ..session import Session

_O = Options()


class _Finite(click.FloatRange):
    """FloatRange that also refuses nan and inf (nan passes every range comparison)."""

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv


def _click_type(default, st: Setting):
    if st.choices is not None:
        return click.Choice(list(st.choices.values()))
    lo = min([st.lo, *st.also]) if st.lo is not None else None
    if isinstance(default, int) and not isinstance(default, bool):
        return click.IntRange(None if lo is None else int(lo), None if st.hi is None else int(st.hi))
    return _Finite(lo, st.hi, min_open=st.lo_open and not st.also, max_open=st.hi_open)


def _setting_option(name: str, default, st: Setting, level_value=None):
    """The click option of one setting: the level's value as its default when ``st.level``."""
    if isinstance(default, bool):
        if "/" in st.flag:
            return click.option(st.flag, name, default=default, show_default=True, help=st.help)
        return click.option(st.flag, name, is_flag=True, default=default, help=st.help)
    if st.level:
        return click.option(st.flag, name, type=_click_type(default, st), default=None,
                            help=f"{st.help} [default: the level's; -{DEFAULT_LEVEL}: {level_value}]")
    shown = st.choices[default] if st.choices is not None else default
    return click.option(st.flag, name, type=_click_type(default, st), default=shown, show_default=True, help=st.help)


# Options fields of the command line, by field name -> option name (the window's three fields
# are options of their own; the others are Options fields)
WINDOW_FIELDS = {"size": "window", "sink": "sink", "slide": "slide"}


def setting_options() -> list:
    """The compression settings' options, from their ``Setting`` metadata."""
    opts = []
    for name, default, st in settings_of(Window):
        opts.append(_setting_option(WINDOW_FIELDS[name], default, st, getattr(_O.window, name)))
    for name, default, st in settings_of(Options):
        if name == "kv_budget":
            st = Setting(st.flag, st.help + "; 0 when --window, --sink or --slide is given", st.lo, st.hi,
                         level=True)
        opts.append(_setting_option(name, default, st, getattr(_O, name)))
    opts.append(click.option("--llm-only", is_flag=True, help="Turn every ensemble head off."))
    for name, _, st in settings_of(EnsembleParams):
        opts.append(_setting_option(name, getattr(DEFAULT_ENSEMBLE, name), st))
    return opts


SETTINGS = ({"level", "llm_only"} | set(WINDOW_FIELDS.values()) | {n for n, _, _ in settings_of(Options)}
            | {n for n, _, _ in settings_of(EnsembleParams)}) - {"verify"}
"""Option names of the compression settings: recorded in the stream, listed apart by ``nacrith -h``."""


def options(f):
    """Every option of the gzip-style command and the subcommands."""
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
        *setting_options(),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


class Job:
    """Settings of one invocation (the parsed options)."""

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
        """The ``Options`` of the level and the settings given. Raises ValueError for values that
        are valid alone but not together (a window of sink + slide > size, match_min 1)."""
        names = {v: k for k, v in EnsembleParams.__dataclass_fields__["mixer"].metadata["setting"].choices.items()}
        ens = LLM_ONLY if self.llm_only else EnsembleParams(**{
            name: names[self.mixer] if name == "mixer" else getattr(self, name)
            for name, _, _ in settings_of(EnsembleParams)})
        lv = Options.from_level(self.level)
        w = lv.window
        # a window given by hand is the window of every frame, unless --kv-budget says otherwise
        explicit = self.window is not None or self.sink is not None or self.slide is not None
        budget = self.kv_budget if self.kv_budget is not None else (0 if explicit else lv.kv_budget)
        return Options.from_level(
            self.level, window=Window(self.window or w.size, self.sink or w.sink, self.slide or w.slide),
            ensemble=ens, frame_size=self.frame_size if self.frame_size is not None else lv.frame_size,
            max_lanes=self.max_lanes or lv.max_lanes, min_lane_tokens=self.min_lane_tokens or lv.min_lane_tokens,
            kv_budget=budget, info=self.info, verify=bool(self.verify))

    def say(self, msg: str) -> None:
        if not self.quiet:
            click.echo(msg, err=True)


def job(kw: dict) -> tuple[Job, list[str]]:
    files = kw.pop("files")
    return Job(**kw), files
