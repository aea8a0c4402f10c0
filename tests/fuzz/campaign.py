"""Decode-fuzzing campaign over mutated real compressed files.

    .venv/bin/python tests/fuzz/campaign.py [--n 10000] [--timeout 60] [--seed 1]

Seeds: small real inputs from ../shared/corpora compressed with the real model (LLM frames with
and without escapes, several lanes, hybrid text + binary, zstd, lzma, stored, empty). Each
mutated file (bit flips, byte edits, truncations, extensions, splices, header field edits) is
decoded; outcomes: ``rejected`` (a NacrithError: correct), ``harmless`` (decoded to the exact
original: the mutation hit a field without effect), ``crash`` (any other exception), ``hang``
(over --timeout seconds), ``wrong`` (returned bytes other than the original: silent corruption).
The summary is written to bench/results/fuzz.json and printed; targets: 0 crash / 0 hang / 0 wrong.
"""

from __future__ import annotations

import collections
import json
import random
import signal
import sys
import time
import traceback
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.common import find_corpora  # noqa: E402
from mutate import llm_stream, mutate  # noqa: E402
from nacrith.options import Options  # noqa: E402
from nacrith.session import Session  # noqa: E402
from nacrith.policy import compress  # noqa: E402
from nacrith.decoder import decompress  # noqa: E402
from nacrith.errors import NacrithError  # noqa: E402
from nacrith.params import EnsembleParams  # noqa: E402
from nacrith.params import Window  # noqa: E402


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def seeds(session: Session) -> list[tuple[str, bytes, bytes]]:
    c = find_corpora()
    alice = (c / "canterbury/alice29.txt").read_bytes()
    fields = (c / "canterbury/fields.c").read_bytes()
    binary = (c / "canterbury/sum").read_bytes()
    xls = (c / "canterbury/kennedy.xls").read_bytes()
    small = Options(window=Window(32, 2, 8), max_lanes=2, min_lane_tokens=8, kv_budget=0)
    items = [
        ("llm-alice", alice[4000:4100], Options()),
        ("llm-fields", fields[:120], Options()),
        ("llm-escapes", b"caf\xe9 \x04 na\xefve text \xff here", Options()),
        ("llm-lanes-slide", alice[9000:9200], small),
        ("llm-skip", b"the cat sat on the mat. " * 6, Options(ensemble=EnsembleParams(skip_bits=2.0))),
        ("hybrid", alice[100:260] + binary[:200] + alice[500:600], Options(frame_size=128)),
        ("zstd", xls[:4000], Options()),
        ("lzma-or-zstd", binary[:3000], Options()),
        ("stored", bytes(random.Random(3).randbytes(200)), Options()),
        ("empty", b"", Options()),
    ]
    out = []
    for name, data, opts in items:
        # the short text seeds are forced onto the LLM path (compress would pick zstd for them)
        blob = llm_stream(data, session, opts) if name.startswith("llm") else compress(data, session, opts)
        assert decompress(blob, session) == data
        out.append((name, data, blob))
    return out


@click.command()
@click.option("--n", default=10000, show_default=True, help="Mutated files to decode.")
@click.option("--timeout", default=60, show_default=True, help="Seconds before a decode counts as a hang.")
@click.option("--seed", default=1, show_default=True)
@click.option("--out", default=str(ROOT / "bench" / "results" / "fuzz.json"), show_default=True)
def main(n, timeout, seed, out):
    session = Session(workers=1)
    rng = random.Random(seed)
    corpus = seeds(session)
    counts = collections.Counter()
    by_kind = collections.defaultdict(collections.Counter)
    failures = []
    signal.signal(signal.SIGALRM, _alarm)
    t0 = time.time()
    for i in range(n):
        name, original, blob = corpus[i % len(corpus)]
        other = corpus[rng.randrange(len(corpus))][2]
        kind, bad = mutate(blob, rng, other) if blob else ("none", blob)
        signal.alarm(timeout)
        try:
            got = decompress(bad, session)
            outcome = "harmless" if got == original else "wrong"
        except NacrithError:
            outcome = "rejected"
        except Hang:
            outcome = "hang"
        except Exception:
            outcome = "crash"
            failures.append(dict(seed=name, mutation=kind, error=traceback.format_exc(limit=3)))
        finally:
            signal.alarm(0)
        if outcome in ("wrong", "hang"):
            failures.append(dict(seed=name, mutation=kind, outcome=outcome, size=len(bad)))
        counts[outcome] += 1
        by_kind[kind][outcome] += 1
        if (i + 1) % 500 == 0:
            print(f"{i + 1}/{n} {dict(counts)} {time.time() - t0:.0f} s", flush=True)
    summary = dict(inputs=n, seconds=round(time.time() - t0, 1), outcomes=dict(counts),
                   by_mutation={k: dict(v) for k, v in by_kind.items()},
                   seeds=[dict(name=nm, original=len(o), compressed=len(b)) for nm, o, b in corpus],
                   crashes=counts["crash"], hangs=counts["hang"], silent_wrong_outputs=counts["wrong"],
                   failures=failures[:50], date=time.strftime("%Y-%m-%d"))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: summary[k] for k in ("inputs", "seconds", "outcomes", "crashes", "hangs",
                                              "silent_wrong_outputs")}))
    sys.exit(1 if counts["crash"] or counts["hang"] or counts["wrong"] else 0)


if __name__ == "__main__":
    main()
