"""Is batched encoding lossless for this model on this backend? The probe that decides.

An arithmetic coder is only lossless when the decoder computes the encoder's probabilities bit for
bit. nacrith's encoder evaluates tokens in large batches; its decoder one token per lane per step
(or a few, with drafts). That is only the same when llama.cpp's logits do not depend on the batch
shape, which holds for the weight types and attention kernels nacrith made invariant
(``native/llama/``) and not, in general, for others (llamafile's sgemm, the repacked and tiled
K-quant GEMMs and llama.cpp's ``vec_dot`` accumulate in different orders).

So before a model's first LLM frame the encoder asks ``probe``: it runs a few hundred tokens of a
built-in text through the real context in three lanes, across a window slide, once with the
decoder's schedule (one token per lane per ``llama_decode``) at one and at two threads, and once
with each batched schedule the encoder and decoder use (rounds of 256- and 37-token batches,
lockstep batches of several steps per lane, a drafted one-lane decode with right and wrong drafts),
and compares every logit row bit for bit (BLAKE2b of the float32 row). Verdicts:

* ``batched``: every schedule gave the decoder's bits: the encoder batches, the decoder drafts.
* ``lockstep``: some batched schedule differs, the decoder's schedule does not depend on the
  thread count: both sides evaluate one token per lane per step (exact by construction; the
  stream records it, ``codec/FORMAT.md``), slower.
* ``unstable``: the decoder's own schedule gives other bits at another thread count, so no stream
  made with this model on this build could be trusted to decode elsewhere: LLM frames are not
  written (text is coded as binary frames) and ``nacrith --check-model`` says why.

The verdict is cached per (probe version, model sha256, backend fingerprint, weight-product
kernel) in ``cache_dir()/probe.json``. A probe bug cannot lose data on its own: ``verify`` (on with
``--rm``, ``--verify``, ``verify=True``) decodes every LLM frame before it is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass

import numpy as np

from .lanes import decode_lane_drafted, decode_lanes, encode_lanes, encode_lanes_lockstep
from .model import Attention, LlamaContext, Model, cache_dir, invariant_products, matmul_kernel
from .params import Window

PROBE_VERSION = 2
BATCHED, LOCKSTEP, UNSTABLE = "batched", "lockstep", "unstable"
WINDOW = Window(96, 4, 24)  # lanes 0 and 1 cross a slide (lane 0 two)
LANE_TOKENS = (120, 100, 40)

# The probe's input: prose, code, numbers and markup, so that every weight row and the attention
# over a sliding window see ordinary activations (written for this purpose; any text would do).
TEXT = (
    "The lighthouse keeper wrote in his log every evening at seven: the wind, the height of the "
    "swell, the ships that passed and the lamps he had trimmed. In the winter of 1887 the entries "
    "grow shorter. \"Fog. Horn sounded 212 times. No ships.\" Then, on the fourteenth of February, "
    "a longer note about a schooner that lost her foremast off the point and was towed into the "
    "harbour by two fishing boats, their crews rowing for four hours against the tide.\n\n"
    "def moving_average(values, n=3):\n"
    "    \"\"\"Average of each window of n values.\"\"\"\n"
    "    out, total = [], 0.0\n"
    "    for i, v in enumerate(values):\n"
    "        total += v\n"
    "        if i >= n:\n"
    "            total -= values[i - n]\n"
    "        if i >= n - 1:\n"
    "            out.append(total / n)\n"
    "    return out\n\n"
    "{\"id\": 4711, \"name\": \"Ridge Road\", \"lat\": 47.3769, \"lon\": 8.5417, \"tags\": [\"gravel\", "
    "\"steep\"], \"open\": true}\n"
    "2026-03-14 08:15:02 INFO  worker-3 accepted job 88121 (queue depth 17, 3.2 ms)\n"
    "2026-03-14 08:15:02 WARN  worker-1 retry 2/5 for job 88094: connection reset by peer\n"
    "<tr><td>Basel</td><td>177,654</td><td>23.9 km&sup2;</td></tr>\n"
    "Le matin, la brume couvrait encore la vallée ; à midi, le soleil avait tout effacé.\n"
    "Quarterly revenue rose 4.7% to $1.28 billion, while operating costs fell for the third "
    "consecutive quarter, the company said in a statement on Tuesday.\n"
)


@dataclass(frozen=True)
class Verdict:
    """The probe's answer: ``schedule`` (``batched``, ``lockstep`` or ``unstable``), ``reason`` (the
    first difference seen, empty for ``batched``), ``seconds`` (the probe's time, 0 when cached)."""

    schedule: str
    reason: str = ""
    seconds: float = 0.0
    cached: bool = False

    @property
    def lossless(self) -> bool:
        return self.schedule in (BATCHED, LOCKSTEP)


def probe_tokens(model: Model) -> list[np.ndarray]:
    """The three lanes of the probe: the built-in text's tokens (repeated if the vocabulary makes
    them fewer than needed), split into ``LANE_TOKENS``."""
    toks = model.tokenize(TEXT.encode())
    need = sum(LANE_TOKENS)
    if len(toks) == 0:
        raise ValueError("the model tokenizes the probe text to nothing")
    toks = np.tile(toks, -(-need // len(toks)))[:need].astype(np.int32)
    out, a = [], 0
    for n in LANE_TOKENS:
        out.append(toks[a:a + n])
        a += n
    return out


def _digest(row: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(row, np.float32).tobytes(), digest_size=16).digest()


class _Rows:
    """Digests of the logit rows each lane received, in step order."""

    def __init__(self, n: int):
        self.rows: list[list[bytes]] = [[] for _ in range(n)]

    def add(self, lane: int, logits: np.ndarray) -> None:
        for r in np.atleast_2d(logits):
            self.rows[lane].append(_digest(r))

    def first_difference(self, ref: "_Rows", lanes=None) -> str | None:
        for l in (range(len(ref.rows)) if lanes is None else lanes):
            a, b = self.rows[l], ref.rows[l]
            for t in range(max(len(a), len(b))):
                if t >= len(a) or t >= len(b) or a[t] != b[t]:
                    return f"lane {l} step {t}"
        return None


class _ScriptedDrafts:
    """Drafts for the probe's drafted decode: the lane's true next tokens, every third draft with a
    wrong token in it, so the decoder evaluates batches of 2..8 tokens and removes wrong cells."""

    def __init__(self, truth: np.ndarray, n_vocab: int):
        self.truth, self.n_vocab, self.calls = truth, n_vocab, 0

    def propose(self, out, t, room):
        self.calls += 1
        k = min(1 + self.calls % 8, room, len(self.truth) - t - 1)
        if k <= 0:
            return []
        guess = [int(x) for x in self.truth[t:t + k]]
        if self.calls % 3 == 0:
            guess[-1] = (guess[-1] + 1) % self.n_vocab
        return guess

    def add(self, out, t):
        pass

    def feedback(self, proposed, accepted):
        pass


def _decoder_rows(model: Model, lanes, attention: Attention, threads: int) -> _Rows:
    rows = _Rows(len(lanes))
    pos = [0] * len(lanes)

    def choose(l, logits):
        rows.add(l, logits)
        t = pos[l]
        pos[l] += 1
        return int(lanes[l][t])

    with LlamaContext(model, n_seq=len(lanes), n_ctx_seq=WINDOW.size, n_batch=max(8, len(lanes)),
                      n_threads=threads, attention=attention) as ctx:
        decode_lanes(ctx, [len(x) for x in lanes], model.bos, WINDOW, choose)
    return rows


def run_probe(model: Model, attention: Attention, threads: int) -> Verdict:
    """Run the probe (module docstring) on ``model`` with ``attention`` at ``threads`` threads for
    the batched schedules; the decoder's schedule runs at 1 and 2 threads (and ``threads``)."""
    t0 = time.perf_counter()
    lanes = probe_tokens(model)
    ref = _decoder_rows(model, lanes, attention, 1)
    for n in sorted({2, threads} - {1}):
        diff = _decoder_rows(model, lanes, attention, n).first_difference(ref)
        if diff:
            return Verdict(UNSTABLE, f"one token per step: {n} threads differ from 1 thread at {diff}",
                           time.perf_counter() - t0)
    checks = []
    for nb in (256, 37):
        rows = _Rows(len(lanes))
        with LlamaContext(model, n_seq=len(lanes), n_ctx_seq=WINDOW.size, n_batch=nb, n_threads=threads,
                          attention=attention) as ctx:
            encode_lanes(ctx, lanes, model.bos, WINDOW, lambda l, t0_, lg: rows.add(l, lg))
        checks.append((f"{nb}-token batches", rows, None))
    rows = _Rows(len(lanes))
    with LlamaContext(model, n_seq=len(lanes), n_ctx_seq=WINDOW.size, n_batch=256, n_threads=threads,
                      attention=attention) as ctx:
        encode_lanes_lockstep(ctx, lanes, model.bos, WINDOW,
                              lambda t, step: [rows.add(l, lg) for l, lg in step.items()])
    checks.append(("lockstep batches of several steps per lane", rows, None))
    rows = _Rows(len(lanes))

    def choose(l, logits):
        rows.add(0, logits)
        return int(lanes[0][len(rows.rows[0]) - 1])

    with LlamaContext(model, n_seq=1, n_ctx_seq=WINDOW.size, n_batch=9, n_threads=threads,
                      attention=attention) as ctx:
        decode_lane_drafted(ctx, len(lanes[0]), model.bos, WINDOW, choose, None,
                            _ScriptedDrafts(lanes[0], model.n_vocab))
    checks.append(("drafted one-lane decode", rows, [0]))
    for what, rows, which in checks:
        diff = rows.first_difference(ref, which)
        if diff:
            return Verdict(LOCKSTEP, f"{what} differ from one token per step at {diff}", time.perf_counter() - t0)
    return Verdict(BATCHED, "", time.perf_counter() - t0)


def cache_key(model: Model, attention: Attention) -> str:
    from .backend import fingerprint

    return (f"v{PROBE_VERSION}|{model.sha256}|{fingerprint(None, attention, model.kernel_record, gpu=False)}"
            f"|lib={_library_digest()}"
            f"|mm={matmul_kernel() or 'stock'}|inv={int(invariant_products())}"
            f"|tiled={os.environ.get('GGML_CPU_TILED_MM', '')}")


def _library_digest() -> str:
    """The sha256 (first 16 hex digits) of the loaded llama.cpp CPU library: a rebuilt library is
    probed again even where its kernel markers and fingerprint did not change."""
    from pathlib import Path

    from .runtime import file_sha256, ggml_cpu_library

    lib = ggml_cpu_library()
    path = getattr(lib, "_name", None)
    return file_sha256(Path(path))[:16] if path else "none"


def _cache_file():
    return cache_dir() / "probe.json"


def _load() -> dict:
    try:
        d = json.loads(_cache_file().read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _store(key: str, v: Verdict) -> None:
    f = _cache_file()
    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        d = _load()
        d[key] = {"schedule": v.schedule, "reason": v.reason, "seconds": round(v.seconds, 2)}
        tmp = f.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(d, indent=1, sort_keys=True))
        os.replace(tmp, f)
    except OSError:
        pass  # a read-only cache only costs time


def verdict(model: Model, attention: Attention, threads: int, use_cache: bool = True) -> Verdict:
    """The cached verdict for (model, backend, attention), else ``run_probe``'s (then cached)."""
    key = cache_key(model, attention)
    if use_cache:
        hit = _load().get(key)
        if isinstance(hit, dict) and hit.get("schedule") in (BATCHED, LOCKSTEP, UNSTABLE):
            return Verdict(hit["schedule"], str(hit.get("reason", "")), 0.0, True)
    v = run_probe(model, attention, threads)
    _store(key, v)
    return v


def describe(v: Verdict) -> str:
    """One line for ``--check-model`` and ``-v``."""
    if v.schedule == BATCHED:
        return "lossless, batched encoding proven bit-exact on this build"
    if v.schedule == LOCKSTEP:
        return (f"lossless with the decoder's schedule (one token per lane per step, slower): batched "
                f"logits are not bit-exact on this build ({v.reason})")
    return f"not usable for LLM frames on this build: {v.reason}; text is stored as binary frames"


__all__ = ["Verdict", "verdict", "run_probe", "describe", "BATCHED", "LOCKSTEP", "UNSTABLE"]
