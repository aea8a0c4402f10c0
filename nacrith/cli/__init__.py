"""Command line, with gzip/zstd habits (click): ``nacrith.cli.main``.

* ``main``: the command group, the gzip-style command and the subcommands.
* ``options``: the option table (compression settings made from their definitions) and ``Job``.
* ``modes``: the drivers of compression, decompression, test and listing, and ``run``.
* ``files``: which inputs are taken, atomic outputs, one-line errors and warnings, signals.
* ``listing``: ``nacrith -l``.

Inputs are kept unless ``--rm`` (removed only after the output is written and verified; of
``--rm`` and ``-k`` the last one given wins). Data is streamed frame by frame, so memory stays
bounded whatever the input length.
"""

from .main import main

__all__ = ["main"]
