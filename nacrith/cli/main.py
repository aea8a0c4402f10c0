"""``nacrith``: the click command group, the gzip-style command and its subcommands.

    nacrith [FILE...]              compress each FILE to FILE.nc (stdin -> stdout when no FILE or -)
    nacrith -d FILE.nc...          decompress to FILE
    nacrith -t FILE.nc...          test integrity, write nothing
    nacrith -l FILE.nc...          list frames, sizes, bpb, model
    nacrith compress|decompress|test|info ...   the same as -z|-d|-t|-l

A subcommand is recognised wherever the global options stand (``nacrith --threads 1 test a.nc``);
errors are one line ``nacrith: FILE: cause``, bad options too, with exit code 1.
"""

from __future__ import annotations

import re
import sys

import click

from .._version import __version__
from .modes import run, usage_error
from .options import SETTINGS, job, options


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
                usage_error(f"compression level {a} out of range (valid: -1 .. -9, --fast, --best)")
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
                (settings if p.name in SETTINGS else general).append(rec)
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
@options
def gzip_cmd(mode, **kw):
    """Compress (default), decompress (-d), test (-t) or list (-l) FILEs; stdin/stdout when no
    FILE or -."""
    job_, files = job(kw)
    run(job_, mode, files)


@main.command()
@options
def compress(**kw):
    """Compress FILE(s) to FILE.nc (stdin when FILE is - or absent)."""
    job_, files = job(kw)
    run(job_, "z", files)


@main.command()
@options
def decompress(**kw):
    """Decompress FILE.nc to FILE; every checksum is verified before the output is kept."""
    job_, files = job(kw)
    run(job_, "d", files)


@main.command()
@options
def test(**kw):
    """Decompress FILE(s) in memory and verify every checksum; write nothing."""
    job_, files = job(kw)
    run(job_, "t", files)


@main.command()
@options
def info(**kw):
    """Print the parameters and frames of FILE.nc without decoding (same as -l)."""
    job_, files = job(kw)
    run(job_, "l", files)


if __name__ == "__main__":
    main()
