"""One entry point for every benchmark: ``python -m bench EXPERIMENT [ARGS...]``.

Experiments (each writes its rows to ``bench/results/``; ``python -m bench EXPERIMENT --help``):

    suite SUITE | files PATH... | enwik8 PATH | readme   corpus tables against gzip/bzip2/xz/zstd
    models       every tested model: bpb, speed against stock prefill, probe verdict, RSS
    speed        the speed rows (main, drafts, levels) against stock prefill
    profile      per-token profile (perf), by context length
    attention    attention kernels: invariance and cost per cached position
    ablation     ensemble heads, one row per input and configuration
    peers        beside llama-zip and xz
    lanes        lanes, KV window and slides
    coldstart    what a lane start costs
    overhead     LLM against ensemble + CDF + coder per token
    scale        workers, Ray actors, streaming memory by frame count
    stream       streaming memory (RSS) by input size
    anybytes     stray bytes inside prose
    binary       binary files: LZMA2 frames against xz -9e
    roundtrip    one file, timed round trip
    tokcost      where the bits go, per token class
    reference    stock llama.cpp prefill of a file's tokens (the speed reference)
    floor        this machine's memory bandwidth and FMA rate: the floor of a decode step
    decode       one-lane decoding by context length, and the step fit a + b x position
    steps        a decode step's cost by rows, threads and position; what drafts could gain

Run on a quiet machine: llama.cpp threads spin, so other load distorts the timings. Every row
records the options, the model and the backend it was made with (``bench.common.context``); a row
made with other options than today's defaults is marked so, and the tables never show it as the
current default.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCRIPTS = {"models": "bench.models", "speed": "bench.speed", "profile": "bench.profile", "attention": "bench.attention",
           "ablation": "bench.ensemble", "peers": "bench.peers", "lanes": "bench.lanes",
           "coldstart": "bench.coldstart", "overhead": "bench.overhead", "scale": "bench.scale",
           "stream": "bench.stream", "anybytes": "bench.anybytes", "binary": "bench.binary",
           "roundtrip": "bench.roundtrip", "tokcost": "bench.tokcost", "reference": "bench.reference",
           "floor": "bench.floor", "decode": "bench.decode_profile", "steps": "bench.steps"}
SUITE_COMMANDS = ("suite", "files", "enwik8", "readme")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    name, rest = argv[0], argv[1:]
    if name in SUITE_COMMANDS:
        from bench.suite import main as suite_main

        return suite_main.main([name, *rest], prog_name="python -m bench", standalone_mode=True) or 0
    if name not in SCRIPTS:
        print(f"python -m bench: unknown experiment {name!r} (python -m bench --help lists them)", file=sys.stderr)
        return 2
    sys.argv = [f"python -m bench {name}", *rest]
    runpy.run_module(SCRIPTS[name], run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
