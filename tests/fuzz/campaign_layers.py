"""Mutation campaign of the per-layer fuzz targets (tests/fuzz/targets.py), no model needed.

    .venv/bin/python tests/fuzz/campaign_layers.py [--n 20000] [--seed 1]

Inputs per target: random bytes, and the conformance vectors mutated as tests/fuzz/mutate.py
mutates streams. Outcomes: ``ok`` (the target's checks passed, including every clean rejection)
and ``crash`` (any other exception: a finding). Summary: bench/results/fuzz_layers.json.
"""

from __future__ import annotations

import json
import random
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mutate import mutate  # noqa: E402
from tests.fuzz.targets import TARGETS  # noqa: E402


def main(argv: list[str]) -> int:
    n = int(argv[argv.index("--n") + 1]) if "--n" in argv else 20000
    rng = random.Random(int(argv[argv.index("--seed") + 1]) if "--seed" in argv else 1)
    seeds = [p.read_bytes() for p in sorted((ROOT / "codec" / "vectors").glob("*/*.nc"))]
    seeds = [s for s in seeds if len(s) > 8]  # (the header mutation edits bytes past the magic)
    summary = {"inputs_per_target": n, "date": time.strftime("%Y-%m-%d"), "targets": {}}
    for name, target in TARGETS.items():
        t0, crashes, failures = time.time(), 0, []
        for i in range(n):
            if i % 4 == 0:
                data = rng.randbytes(rng.randrange(600))
            else:
                _, data = mutate(rng.choice(seeds), rng, rng.choice(seeds))
            try:
                target(data)
            except Exception:
                crashes += 1
                if len(failures) < 10:
                    failures.append(dict(input=data[:256].hex(), error=traceback.format_exc(limit=3)))
        summary["targets"][name] = dict(inputs=n, crashes=crashes, seconds=round(time.time() - t0, 1),
                                        failures=failures)
        print(name, summary["targets"][name]["seconds"], "s", crashes, "crashes", flush=True)
    out = ROOT / "bench" / "results" / "fuzz_layers.json"
    out.write_text(json.dumps(summary, indent=1) + "\n")
    return 1 if any(t["crashes"] for t in summary["targets"].values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
