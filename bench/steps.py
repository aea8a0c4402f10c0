"""What one decode step costs by its rows, its threads and its KV position, and what drafts
could gain from it (issue 40, items 3 and 4).

    .venv/bin/python -m bench steps [--file alice29.txt:49152] [--threads 1,2]

Three parts, one row (``bench/results/steps.jsonl``, table ``steps.md``):

* **Step cost.** On one context of the default model and attention, a step of ``r`` rows of one
  sequence (the step's input token plus ``r - 1`` drafted tokens) at ``p`` cached positions: the
  median of 24 calls of ``llama_decode`` (each followed by ``seq_rm`` of its rows), for r in
  1, 2, 3, 5, 9 and p in 256, 2048, 6000, at each thread count; and the one-row step with
  llama.cpp's graph reuse turned off (``LLAMA_GRAPH_REUSE_DISABLE=1``), which shows what
  building the graph again each step would cost.
* **Draft sources.** On the file's tokens, offline (no LLM: a draft only has to come true): how
  often the next token is among the first k candidates of a token n-gram table (orders 6, 4, 3,
  2, 1 backed off, by count: the kind of guess nacrith's n-gram and match heads make), and the
  tokens per call of the decoder's prompt lookup (``nacrith.lanes.PromptLookup`` with the
  ``Execution`` defaults, and without its gates).
* **Projection.** A step with k candidates for the next token yields 1 + hit(k) tokens and costs
  ``cost(1 + k rows)``; its rate relative to plain one-token steps at each position is
  ``(1 + hit(k)) x cost(1) / cost(1 + k)``. Above 1 drafting would pay there.
"""

from __future__ import annotations

import collections
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import append_row, cpu_model, find_corpora, read_rows  # noqa: E402
from bench.decode_profile import step_costs  # noqa: E402

OUT = ROOT / "bench" / "results" / "steps.jsonl"
ROWS = (1, 2, 3, 5, 9)
POSITIONS = (256, 2048, 6000)
ORDERS = (6, 4, 3, 2, 1)


def no_reuse_cost(model, tokens, threads: int) -> dict:
    """One-row step costs with llama.cpp's graph reuse off (read when a context is created)."""
    old = os.environ.get("LLAMA_GRAPH_REUSE_DISABLE")
    os.environ["LLAMA_GRAPH_REUSE_DISABLE"] = "1"
    try:
        return step_costs(model, tokens, threads, rows=(1,), positions=POSITIONS, warmup=2)
    finally:
        if old is None:
            del os.environ["LLAMA_GRAPH_REUSE_DISABLE"]
        else:
            os.environ["LLAMA_GRAPH_REUSE_DISABLE"] = old


def patches_sha() -> str:
    """install.sh's key of the llama.cpp patches (native/llama/*.patch) this checkout builds: the
    rows of two kernel versions with the same bits (the same backend fingerprint) stay apart."""
    import hashlib

    return hashlib.sha256(b"".join((ROOT / "native" / "llama" / f).read_bytes()
                                   for f in ("nacrith-fa.patch", "nacrith-mm.patch"))).hexdigest()[:16]


def ngram_hits(tokens, ks=(1, 2, 3, 4)) -> dict:
    """Share of tokens among the first k candidates of a backed-off token n-gram table of the
    tokens before them (highest order first, by count, ties by first seen)."""
    tables = {o: collections.defaultdict(collections.Counter) for o in ORDERS}
    uni: collections.Counter = collections.Counter()
    hits = collections.Counter()
    kmax = max(ks)
    toks = [int(t) for t in tokens]
    for t, y in enumerate(toks):
        cands: list[int] = []
        for o in ORDERS:
            if t >= o and len(cands) < kmax:
                c = tables[o].get(tuple(toks[t - o:t]))
                for tok, _ in (c.most_common(kmax) if c else ()):
                    if tok not in cands:
                        cands.append(tok)
        for tok, _ in uni.most_common(kmax):
            if len(cands) < kmax and tok not in cands:
                cands.append(tok)
        for k in ks:
            hits[k] += y in cands[:k]
        for o in ORDERS:
            if t >= o:
                tables[o][tuple(toks[t - o:t])][y] += 1
        uni[y] += 1
    return {k: round(hits[k] / max(1, len(toks)), 4) for k in ks}


def prompt_lookup(tokens, gated: bool = True) -> dict:
    """Tokens per call of the decoder's prompt lookup on these tokens (no LLM: the schedule only)."""
    import numpy as np

    from nacrith.lanes import PromptLookup, accept_drafts
    from nacrith.options import Execution

    ex = Execution()
    d = PromptLookup(k_max=ex.draft_max, min_match=ex.draft_min_match,
                     min_hit_rate=ex.draft_min_hit_rate if gated else 0.0)
    toks = np.asarray(tokens, np.int32)
    T = len(toks)
    out = np.zeros(T, np.int32)
    t = calls = drafted = accepted = 0
    while t < T:
        guess = d.propose(out, t, min(T - 1 - t, ex.draft_max))
        calls += 1
        i = accept_drafts(d, out, t, guess, lambda k, t=t: int(toks[t + k]))
        drafted += len(guess)
        accepted += i
        t += i + 1
    return dict(tokens_per_call=round(T / max(1, calls), 4), drafted=drafted, accepted=accepted)


def main(argv: list[str]) -> int:
    import click

    @click.command()
    @click.option("--file", "spec", default="alice29.txt:49152", show_default=True,
                  help="NAME:BYTES of a Canterbury file (the draft sources' tokens)")
    @click.option("--threads", default="1,2", show_default=True, help="thread counts to time")
    def run(spec, threads):
        from nacrith.model import Model, default_attention

        name, n = spec.split(":")
        data = (find_corpora() / "canterbury" / name).read_bytes()[:int(n)]
        model = Model()
        tokens = model.tokenize(data)
        ref = model.tokenize((find_corpora() / "canterbury" / "alice29.txt").read_bytes()[:40000])
        costs = {}
        for th in (int(x) for x in threads.split(",")):
            costs[th] = step_costs(model, ref, th, rows=ROWS, positions=POSITIONS, warmup=2)
            print(th, costs[th], flush=True)
        top = max(costs)
        no_reuse = no_reuse_cost(model, ref, top)
        hits = ngram_hits(tokens)
        row = dict(model=model.label, attention=default_attention().name, file=name, bytes=len(data),
                   tokens=len(tokens), step_ms={str(th): {str(p): {str(r): round(v, 3) for r, v in c.items()}
                                                         for p, c in cs.items()}
                                               for th, cs in costs.items()},
                   no_graph_reuse_ms={str(p): round(c[1], 3) for p, c in no_reuse.items()}, no_graph_reuse_threads=top,
                   ngram_hit=hits, prompt_lookup=prompt_lookup(tokens), prompt_lookup_ungated=prompt_lookup(tokens, False),
                   patches=patches_sha(), cpu=cpu_model(), date=time.strftime("%Y-%m-%d"))
        append_row(OUT, row)
        table()

    run.main(argv, standalone_mode=True)
    return 0


def table() -> None:
    rows = read_rows(OUT)
    lines = ["# What a decode step costs, and what drafts could gain (`python -m bench steps`)", "",
             "ms per `llama_decode` of r rows of one lane at p cached positions (the median of 24), by "
             "threads; the one-row step without llama.cpp's graph reuse; then the projection: a step "
             "with k draft candidates yields 1 + hit(k) tokens (hit: the next token among the first k "
             "guesses of a token n-gram table, offline on the file) for cost(1 + k rows); its rate "
             "against one-token steps is (1 + hit(k)) x cost(1) / cost(1 + k) (> 1: drafting pays).", ""]
    for r in rows:
        lines += [f"## {r['date']}, {r['model']}, {r['attention']}, patches {r.get('patches', '?')}, {r['cpu']}", "",
                  "| threads | position | " + " | ".join(f"{k} rows ms" for k in ROWS) + " | 1 row, no graph reuse |",
                  "|---|---|" + "---|" * (len(ROWS) + 1)]
        for th, cs in r["step_ms"].items():
            for p, c in cs.items():
                nr = r["no_graph_reuse_ms"].get(p, "-") if th == str(r["no_graph_reuse_threads"]) else "-"
                lines.append(f"| {th} | {p} | " + " | ".join(str(c.get(str(k), "-")) for k in ROWS) + f" | {nr} |")
        pl, plu = r["prompt_lookup"], r["prompt_lookup_ungated"]
        lines += ["", f"Draft sources on {r['file']} ({r['bytes']} bytes, {r['tokens']} tokens): n-gram hit rate "
                  + ", ".join(f"top-{k} {v}" for k, v in r["ngram_hit"].items())
                  + f"; prompt lookup (defaults) {pl['tokens_per_call']} tokens per call "
                  f"({pl['accepted']} of {pl['drafted']} drafted tokens right), without its gates "
                  f"{plu['tokens_per_call']} ({plu['accepted']} of {plu['drafted']}).", "",
                  "| threads | position | " + " | ".join(f"k={k}" for k in r["ngram_hit"]) + " |",
                  "|---|---|" + "---|" * len(r["ngram_hit"])]
        for th, cs in r["step_ms"].items():
            for p, c in cs.items():
                cells = []
                for k, h in r["ngram_hit"].items():
                    rows_k = 1 + int(k)
                    cost = c.get(str(rows_k))
                    if cost is None:  # interpolate between the timed row counts
                        lo = max(x for x in ROWS if x < rows_k)
                        hi = min(x for x in ROWS if x > rows_k)
                        cost = c[str(lo)] + (c[str(hi)] - c[str(lo)]) * (rows_k - lo) / (hi - lo)
                    cells.append(f"{(1 + h) * c['1'] / cost:.2f}")
                lines.append(f"| {th} | {p} | " + " | ".join(cells) + " |")
        lines.append("")
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
