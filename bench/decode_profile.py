"""One-lane decoding by context length: where a decode step's time goes as the KV cache fills.

    .venv/bin/python -m bench decode [--files alice29.txt:49152,alice29.txt:16384] [--threads 2]

For each file prefix (a one-lane frame at the default level: the model's 8k window): a verified
round trip whose decoder is timed per ``llama_decode`` call, bucketed by the KV position of the
call (0-1k, 1-4k, 4-8k cached positions): tokens, ms per token in the LLM and elsewhere (ensemble,
CDF, coder, Python). Beside it, on the same context, one-token steps at fixed positions (256 ..
8000 cached cells, the median of 24 steps each) fitted as ``a + b x position``: ``a`` is what a
step costs whatever the context (weights, output layer, threads' barriers), ``b`` what each cached
position adds (attention); and the floor of both on this machine (``bench/floor.py``). Rows:
``bench/results/decode.jsonl``; table ``bench/results/decode.md``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import append_row, context, cpu_model, find_corpora, read_rows  # noqa: E402

OUT = ROOT / "bench" / "results" / "decode.jsonl"
BUCKETS = ((0, 1024), (1024, 4096), (4096, 8192))


def timed_decode(session, blob: bytes, data: bytes) -> dict:
    """Decompress ``blob`` with every ``llama_decode`` timed; per bucket of KV position."""
    from nacrith import model as M
    from nacrith.decoder import decompress

    calls = []
    real = M.LlamaContext.decode

    def decode(self, tokens, positions, seqs, outputs=None):
        t0 = time.perf_counter()
        out = real(self, tokens, positions, seqs, outputs)
        calls.append((int(positions[0]), len(tokens), time.perf_counter() - t0))
        return out

    M.LlamaContext.decode = decode
    try:
        t0 = time.perf_counter()
        back = decompress(blob, session)
        wall = time.perf_counter() - t0
    finally:
        M.LlamaContext.decode = real
    if back != data:
        raise SystemExit("ROUND TRIP FAILED")
    n_tokens = len(session.model.tokenize(data))
    llm = sum(c[2] for c in calls)
    rows = {}
    for a, b in BUCKETS:
        sel = [c for c in calls if a <= c[0] < b]
        if sel:
            # tokens decoded by the calls of this bucket: one per call plus the accepted drafts,
            # counted as the positions the calls advanced (the next call's position)
            toks = sum(1 for _ in sel)
            rows[f"{a // 1024}-{b // 1024}k"] = dict(calls=len(sel), llm_ms_per_call=round(1e3 * sum(c[2] for c in sel) / len(sel), 2),
                                                    tokens_per_call=round(sum(c[1] for c in sel) / toks, 2))
    return dict(tokens=n_tokens, seconds=round(wall, 1), tok_s=round(n_tokens / wall, 1), calls=len(calls),
                llm_seconds=round(llm, 1), other_seconds=round(wall - llm, 1), buckets=rows)


def step_costs(model, tokens, threads: int, rows=(1,), positions=(256, 1024, 2048, 4096, 6144, 8000),
               reps: int = 24, warmup: int = 0) -> dict:
    """{position: {rows: ms}}: the median of ``reps`` ``llama_decode`` calls (after ``warmup``
    untimed ones) of ``rows`` tokens of sequence 0 at ``position`` cached cells (BOS then
    ``tokens``), each followed by ``seq_rm`` of its rows; default model attention."""
    import numpy as np

    from nacrith.model import LlamaContext, default_attention

    seq = np.concatenate([[model.bos], tokens]).astype(np.int32)
    out: dict = {}
    with LlamaContext(model, n_seq=1, n_ctx_seq=8192, n_batch=256, n_threads=threads,
                      attention=default_attention()) as ctx:
        top = max(positions)
        for i in range(0, top, 256):  # fill the cache without asking for logits
            j = min(top, i + 256)
            ctx.decode(seq[i:j], np.arange(i, j, dtype=np.int32), np.zeros(j - i, np.int32), np.zeros(j - i, np.int8))
        for p in sorted(positions, reverse=True):  # each step at p follows cells 0..p-1
            ctx.seq_rm(0, p, -1)
            out[p] = {}
            for r in rows:
                times = []
                for _ in range(warmup + reps):
                    t0 = time.perf_counter()
                    ctx.decode(seq[p:p + r], np.arange(p, p + r, dtype=np.int32), np.zeros(r, np.int32))
                    times.append(time.perf_counter() - t0)
                    ctx.seq_rm(0, p, -1)
                out[p][r] = float(np.median(times[warmup:])) * 1e3
    return dict(sorted(out.items()))


def step_fit(session, positions=(256, 1024, 2048, 4096, 6144, 8000), reps: int = 24) -> dict:
    """ms of a one-token step at fixed KV positions; least-squares a + b x position."""
    import numpy as np

    m = session.model
    toks = m.tokenize((find_corpora() / "canterbury" / "alice29.txt").read_bytes()[:40000])
    out = {p: c[1] for p, c in step_costs(m, toks, session.threads, positions=positions, reps=reps).items()}
    x = np.array(list(out)), np.array(list(out.values()))
    b, a = np.polyfit(x[0], x[1], 1)
    return dict(ms_by_position={str(k): round(v, 2) for k, v in out.items()}, a_ms=round(float(a), 2),
                b_us_per_position=round(float(b) * 1e3, 3))


def main(argv: list[str]) -> int:
    import click

    @click.command()
    @click.option("--files", default="alice29.txt:49152,alice29.txt:16384", show_default=True)
    @click.option("--threads", type=int, default=None)
    def run(files, threads):
        from nacrith.options import Options
        from nacrith.policy import compress
        from nacrith.session import Session

        session = Session(workers=1, threads=threads)
        fit = step_fit(session)
        print(fit, flush=True)
        for spec in files.split(","):
            name, n = spec.split(":")
            data = (find_corpora() / "canterbury" / name).read_bytes()[:int(n)]
            t0 = time.perf_counter()
            stats: dict = {}
            blob = compress(data, session, Options(), stats=stats)
            ct = time.perf_counter() - t0
            dec = timed_decode(session, blob, data)
            row = dict(context(session, Options()), file=name, bytes=len(data), bpb=round(8 * len(blob) / len(data), 4),
                       compress_tok_s=round(stats["tokens"] / ct, 1), decode=dec, step_fit=fit,
                       threads=session.threads, cpu=cpu_model(), date=time.strftime("%Y-%m-%d"))
            append_row(OUT, row)
        table()

    run.main(argv, standalone_mode=True)
    return 0


def table() -> None:
    rows = read_rows(OUT)
    lines = ["# One-lane decoding by context length (`python -m bench decode`)", "",
             "Per file: the decoder's `llama_decode` calls bucketed by KV position (calls, ms per call, tokens "
             "per call: drafts make it > 1); the step fit `a + b x position` of one-token steps on the same "
             "machine (a: what a step costs whatever the context, b: what each cached position adds).", "",
             "| date | file (bytes) | bpb | compress tok/s | decompress tok/s | LLM s / other s | 0-1k ms/call (tok/call) "
             "| 1-4k | 4-8k | a ms | b us/position | threads |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d = r["decode"]
        cells = []
        for k in ("0-1k", "1-4k", "4-8k"):
            b = d["buckets"].get(k)
            cells.append(f"{b['llm_ms_per_call']} ({b['tokens_per_call']})" if b else "-")
        f = r["step_fit"]
        lines.append(f"| {r['date']} | {r['file']} ({r['bytes']}) | {r['bpb']} | {r['compress_tok_s']} | {d['tok_s']} "
                     f"| {d['llm_seconds']} / {d['other_seconds']} | {' | '.join(cells)} | {f['a_ms']} "
                     f"| {f['b_us_per_position']} | {r['threads']} |")
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
