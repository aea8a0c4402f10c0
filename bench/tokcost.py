"""Where the LLM's bits go in a file: bits per token class, the plain model in one long context.

    .venv/bin/python bench/tokcost.py FILE [--tokens 8000]

The first ``--tokens`` tokens of FILE after BOS, in one llama.cpp context of 8,192 tokens (as
llama-zip runs the model), logits for every position; each token's code length -log2 p(token)
is summed per class: digits, tokens with a letter, the rest (punctuation, white space). No
ensemble, no coder: it tells which part of a file a better head could still win (a head can only
gain where the model's bits are). Prints one line per class.
"""

from __future__ import annotations

import collections
import sys
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--tokens", "n", default=8000, show_default=True, help="Tokens scored (at most 8,191).")
@click.option("--threads", default=2, show_default=True)
def main(path, n, threads):
    import llama_cpp

    from nacrith.model import resolve_model_path

    llm = llama_cpp.Llama(model_path=str(resolve_model_path()), n_ctx=8192, n_batch=512, logits_all=True,
                          verbose=False, n_threads=threads)
    toks = llm.tokenize(Path(path).read_bytes(), add_bos=False, special=False)[:min(n, 8191)]
    llm.eval([llm.token_bos()] + toks)
    z = np.array(llm.scores[:len(toks)], dtype=np.float64)
    z -= z.max(1, keepdims=True)
    lp = z - np.log(np.exp(z).sum(1, keepdims=True))
    bits = -lp[np.arange(len(toks)), toks] / np.log(2)
    tot, cnt = collections.Counter(), collections.Counter()
    for t, b in zip(toks, bits):
        s = llm.detokenize([t]).decode("utf-8", "replace")
        k = "digits" if s.strip().isdigit() else "letters" if any(c.isalpha() for c in s) else "punctuation/space"
        tot[k] += b
        cnt[k] += 1
    print(f"{Path(path).name}: {len(toks)} tokens, {bits.sum() / 8:.0f} bytes")
    for k in sorted(tot, key=tot.get, reverse=True):
        print(f"  {k}: {cnt[k]} tokens, {tot[k] / 8:.0f} bytes ({100 * tot[k] / bits.sum():.1f} %), "
              f"{tot[k] / cnt[k]:.3f} bits/token")


if __name__ == "__main__":
    main()
