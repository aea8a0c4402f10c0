"""The corpus suites: ``python -m bench suite SUITE`` (canterbury, calgary, enwik, realworld, snappy),
``python -m bench files PATH...``; ``python -m bench enwik8 PATH`` for the full 100 MB file.

Every file goes through nacrith (compressed, decompressed, compared) and through gzip -9,
bzip2 -9, xz -9e and zstd -19 (Python's gzip/bz2/lzma and the zstandard bindings). Results go to
bench/results/<suite>-<date>.json with a Markdown table (.md) and plots (.png) beside it.
``python -m bench readme`` rewrites the results section of ``docs/benchmarks.md`` from the latest
JSON files.

Run on a quiet machine: llama.cpp threads spin, so other load distorts the timings.
"""

from __future__ import annotations

import bz2
import datetime
import gzip
import hashlib
import json
import lzma
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import click
import zstandard

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import cpu_model, find_corpora, timed_round_trip  # noqa: E402
from nacrith import __version__  # noqa: E402
from nacrith.options import Options  # noqa: E402
from nacrith.session import Session  # noqa: E402
from nacrith.policy import compress  # noqa: E402
from nacrith.decoder import decompress  # noqa: E402
from nacrith.format import iter_frames  # noqa: E402
from nacrith.format import FRAME_LLM, VERSION as FORMAT_VERSION, EndFrame  # noqa: E402

RESULTS = ROOT / "bench" / "results"
ROW_CACHE = RESULTS / "cache" / "rows"  # one verified row per suite and file, so long suites resume
ENWIK8_SHA256 = "2b49720ec4d78c3c9fabaee6e4179a5e997302b3a70029f30f2d582218c024a8"
SUITES = {
    "canterbury": ["alice29.txt", "asyoulik.txt", "cp.html", "fields.c", "grammar.lsp", "kennedy.xls",
                   "lcet10.txt", "plrabn12.txt", "ptt5", "sum", "xargs.1"],
    "calgary": ["bib", "book1", "book2", "geo", "news", "obj1", "obj2", "paper1", "paper2", "paper3",
                "paper4", "paper5", "paper6", "pic", "progc", "progl", "progp", "trans"],
    "enwik": ["enwik5", "enwik6"],
    "realworld": ["population.csv", "requests_models.py"],
    "snappy": ["fireworks.jpeg", "geo.protodata", "html", "html_x_4", "kppkn.gtb", "paper-100k.pdf", "urls.10K"],
}
CLASSIC = {
    "gzip -9": lambda d: gzip.compress(d, 9, mtime=0),
    "bzip2 -9": lambda d: bz2.compress(d, 9),
    "xz -9e": lambda d: lzma.compress(d, preset=9 | lzma.PRESET_EXTREME),
    "zstd -19": lambda d: zstandard.ZstdCompressor(level=19).compress(d),
}
# Published results for context only: never measured here, never mixed with measured rows.
NACRITH_PAPER = "Nacrith paper, arXiv:2602.19626 (reference design)"
LTCB = ("M. Mahoney's leaders of the Large Text Benchmark (http://mattmahoney.net/dc/text.html), "
        "as he quoted them in https://www.mail-archive.com/agi@agi.topicbox.com/msg11004.html")
PUBLISHED = [
    ("Nacrith (paper)", "alice29.txt", 0.918, NACRITH_PAPER),
    ("Nacrith (paper)", "enwik8", 0.9389, NACRITH_PAPER),
    ("cmix v21, as measured by the Nacrith paper", "alice29.txt", 1.63, NACRITH_PAPER),
    ("FineZip (8B LLM), as cited by the Nacrith paper", "enwik8", 1.024, NACRITH_PAPER),
    ("ts_zip (RWKV 169M)", "alice29.txt", 1.142, "https://bellard.org/ts_zip"),
    ("ts_zip (RWKV 169M)", "book1", 1.431, "https://bellard.org/ts_zip"),
    ("ts_zip (RWKV 169M)", "enwik8", 1.106, "https://bellard.org/ts_zip"),
    # enwik9 (1e9 bytes), not enwik8: sizes 107,261,318 and 108,244,767 bytes
    ("nncp", "enwik9", 0.8581, LTCB),
    ("cmix", "enwik9", 0.8660, LTCB),
]


# tables other scripts write (bench/ensemble.py --table, bench/lanes.py table, ...)
def machine() -> dict:
    cpu = cpu_model()
    import llama_cpp
    import numpy

    return dict(cpu=cpu, cores=len(os.sched_getaffinity(0)), python=platform.python_version(),
                versions={"nacrith": __version__, "llama-cpp-python": llama_cpp.__version__,
                          "numpy": numpy.__version__, "zstandard": zstandard.__version__})


def llm_share(blob: bytes) -> float:
    total = llm = 0
    for fr in iter_frames(blob):
        if isinstance(fr, EndFrame):
            break
        total += fr.raw_size
        llm += fr.raw_size if fr.kind == FRAME_LLM else 0
    return llm / total if total else 0.0


def row_key(session: Session, opts: Options, data: bytes) -> str:
    """What a cached row depends on: the input, the options, the model, the backend and the format."""
    h = hashlib.sha256()
    for part in (hashlib.sha256(data).hexdigest(), repr(opts), session.model.sha256, session.fingerprint,
                 str(FORMAT_VERSION)):
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def cached_row(suite: str, path: Path, key: str) -> dict | None:
    """The verified row of an earlier run of ``suite`` on the same input and settings, if any."""
    f = ROW_CACHE / suite / f"{path.name}.json"
    if not f.exists():
        return None
    row = json.loads(f.read_text())
    return row if row.get("key") == key else None


def store_row(suite: str, path: Path, row: dict) -> None:
    """Keep a verified row (atomically: temp file + rename) so an interrupted suite resumes after it."""
    d = ROW_CACHE / suite
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{path.name}.json.tmp"
    tmp.write_text(json.dumps(row, indent=1) + "\n")
    os.replace(tmp, d / f"{path.name}.json")


def git_commit() -> str | None:
    """The commit the benchmark runs from: $NACRITH_BENCH_COMMIT (set when running from a snapshot
    of the tree), else ``git rev-parse HEAD``, else None."""
    if os.environ.get("NACRITH_BENCH_COMMIT"):
        return os.environ["NACRITH_BENCH_COMMIT"]
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def run_file(session: Session, opts: Options, path: Path, max_bytes: int | None) -> dict:
    data = path.read_bytes()
    if max_bytes:
        data = data[:max_bytes]
    row = dict(file=path.name, bytes=len(data), prefix=bool(max_bytes and path.stat().st_size > max_bytes),
               sha256=hashlib.sha256(data).hexdigest(), date=datetime.date.today().isoformat(),
               commit=git_commit())
    for name, fn in CLASSIC.items():
        t0 = time.perf_counter()
        size = len(fn(data))
        row[name] = dict(size=size, bpb=round(8 * size / max(len(data), 1), 4),
                         seconds=round(time.perf_counter() - t0, 3))
    r = timed_round_trip(session, data, opts, str(path))
    blob, stats = r["blob"], r["stats"]
    t1, t2 = r["compress_s"], r["compress_s"] + r["decompress_s"]
    t0 = 0.0
    # tokens of the LLM frames written (none when the whole input fell back to binary frames)
    tokens = 0 if stats.get("fallback") else stats.get("tokens", 0)
    row["nacrith"] = dict(size=len(blob), bpb=round(8 * len(blob) / max(len(data), 1), 4),
                          compress_s=round(t1 - t0, 2), decompress_s=round(t2 - t1, 2), tokens=tokens,
                          compress_tok_s=round(tokens / (t1 - t0), 1) if tokens else None,
                          decompress_tok_s=round(tokens / (t2 - t1), 1) if tokens else None,
                          llm_share=round(llm_share(blob), 4), skipped=stats.get("skipped", 0),
                          frames=stats.get("frames", {}), fallback=stats.get("fallback", False),
                          peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                          verified=True)
    print(json.dumps(row), flush=True)
    return row


def write_results(suite: str, rows: list[dict], session: Session, opts: Options, extra: dict | None = None,
                  quiet: bool = False) -> Path:
    date = datetime.date.today().isoformat()
    out = RESULTS / f"{suite}-{date}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = dict(suite=suite, date=date, machine=machine(), threads=session.threads, workers=session.workers,
               model=str(session.model.path.name), model_sha256=session.model.sha256,
               backend=session.fingerprint, options=repr(opts), rows=rows, **(extra or {}))
    out.write_text(json.dumps(doc, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(doc))
    plot(doc, out.with_suffix(".png"))
    if not quiet:
        print(markdown(doc))
    return out


def markdown(doc: dict) -> str:
    comps = ["nacrith", *CLASSIC]
    lines = [f"### {doc['suite']} ({doc['date']}, {doc['machine']['cpu']}, {doc['threads']} threads, "
             f"model {doc['model']})", "",
             "| file | bytes | " + " | ".join(f"{c} bpb" for c in comps) + " | LLM share | compress tok/s | decompress tok/s |",
             "|---|---|" + "---|" * (len(comps) + 3)]
    tot = {c: 0 for c in comps}
    nbytes = 0
    for r in doc["rows"]:
        best = min(r[c]["bpb"] for c in comps)
        cells = [f"**{r[c]['bpb']:.3f}**" if r[c]["bpb"] == best else f"{r[c]['bpb']:.3f}" for c in comps]
        n = r["nacrith"]
        name = r["file"] + (" (prefix)" if r.get("prefix") else "")
        lines.append(f"| {name} | {r['bytes']} | " + " | ".join(cells) +
                     f" | {100 * n['llm_share']:.0f} % | {n['compress_tok_s'] or '-'} | {n['decompress_tok_s'] or '-'} |")
        for c in comps:
            tot[c] += r[c]["size"]
        nbytes += r["bytes"]
    if nbytes:
        lines.append("| **total** | " + str(nbytes) + " | " +
                     " | ".join(f"{8 * tot[c] / nbytes:.3f}" for c in comps) + " | | | |")
    lines += ["", "Every nacrith row was decompressed and compared with the original."]
    if doc.get("pending"):
        lines += ["", f"Not run yet ({len(doc['pending'])} of {len(doc['rows']) + len(doc['pending'])} files; "
                      "the suite resumes where it stopped): " + ", ".join(doc["pending"]) + "."]
    lines.append("")
    return "\n".join(lines) + "\n"


def published_table() -> str:
    lines = ["| compressor (published, not measured here) | file | bpb | source |", "|---|---|---|---|"]
    for name, f, bpb, src in PUBLISHED:
        lines.append(f"| {name} | {f} | {bpb if bpb is not None else '-'} | {src} |")
    return "\n".join(lines) + "\n"


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["rows"]
    comps = ["nacrith", *CLASSIC]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(max(6, 1.1 * len(rows)), 8))
    w = 0.8 / len(comps)
    for i, c in enumerate(comps):
        a1.bar([x + i * w for x in range(len(rows))], [r[c]["bpb"] for r in rows], w, label=c)
    a1.set_xticks([x + 0.4 - w / 2 for x in range(len(rows))], [r["file"] for r in rows], rotation=30, ha="right")
    a1.set_ylabel("bits per byte")
    a1.set_title(f"{doc['suite']}: bpb per file (lower is better)")
    a1.legend(fontsize=8)
    ct = [r["nacrith"]["compress_tok_s"] or 0 for r in rows]
    dt = [r["nacrith"]["decompress_tok_s"] or 0 for r in rows]
    a2.bar([x - 0.2 for x in range(len(rows))], ct, 0.4, label="compress")
    a2.bar([x + 0.2 for x in range(len(rows))], dt, 0.4, label="decompress")
    a2.set_xticks(range(len(rows)), [r["file"] for r in rows], rotation=30, ha="right")
    a2.set_ylabel("tokens / s")
    a2.set_title(f"nacrith throughput ({doc['machine']['cpu']}, {doc['threads']} threads)")
    a2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


_common = [
    click.option("--lanes", default=Options().max_lanes, show_default=True),
    click.option("--max-bytes", type=int, default=None, help="Use only this prefix of each file (marked)."),
    click.option("--threads", type=int, default=None),
]


def _opts(f):
    for o in reversed(_common):
        f = o(f)
    return f


@click.group()
def main():
    """nacrith benchmarks."""


@main.command()
@click.argument("suite", type=click.Choice(sorted(SUITES)))
@_opts
@click.option("--smallest-first", is_flag=True, help="Run the files in order of size.")
@click.option("--only", default=None, metavar="NAME,...",
              help="Run only these files of the suite in this sitting (the table still lists every file).")
@click.option("--rerun", is_flag=True,
              help="Run the files of this sitting again even when a cached row matches (after an encoder "
                   "change the row key does not cover).")
def suite(suite, lanes, max_bytes, threads, smallest_first, only, rerun):
    """Run a named corpus suite, resumably.

    Each verified row is kept in bench/results/cache/rows/SUITE/ and reused while the input, the
    options, the model, the backend and the format version are unchanged, so a suite longer than one
    sitting is run in parts (stop it at any time; run the same command again). The table is rewritten
    after every file and names the files not yet run. --only runs a subset in this sitting, for
    example the quick binary files before the long texts. The key does not cover how the encoder
    chooses among the frames the format allows; after such a change, --rerun --only NAME,...
    measures the files it affects again.
    """
    folder = find_corpora() / suite
    names = SUITES[suite]
    if only:
        wanted = [n.strip() for n in only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise click.BadParameter(f"not in suite {suite}: {', '.join(unknown)}", param_hint="--only")
        names = [n for n in names if n in wanted]
    if smallest_first:
        names = sorted(names, key=lambda f: (folder / f).stat().st_size)
    session = Session(threads=threads)
    opts = Options(max_lanes=lanes)
    done: dict[str, dict] = {}
    keys: dict[str, str] = {}
    for f in SUITES[suite]:  # every file, so rows of other sittings stay in the table
        data = (folder / f).read_bytes()
        keys[f] = row_key(session, opts, data[:max_bytes] if max_bytes else data)
        row = None if rerun and f in names else cached_row(suite, folder / f, keys[f])
        if row is not None:
            print(f"{f}: verified row from {row.get('date')} reused", flush=True)
            done[f] = row

    def write() -> None:
        write_results(suite, [done[n] for n in SUITES[suite] if n in done], session, opts,
                      extra=dict(pending=[n for n in SUITES[suite] if n not in done]), quiet=True)

    for f in names:
        if f not in done:
            row = run_file(session, opts, folder / f, max_bytes)
            row["key"] = keys[f]
            store_row(suite, folder / f, row)
            done[f] = row
            write()
    write()
    print((RESULTS / f"{suite}-{datetime.date.today().isoformat()}.md").read_text())


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--name", default="files", show_default=True)
@_opts
def files(paths, name, lanes, max_bytes, threads):
    """Run any files."""
    session = Session(threads=threads)
    opts = Options(max_lanes=lanes)
    rows = [run_file(session, opts, Path(p), max_bytes) for p in paths]
    write_results(name, rows, session, opts)


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--frame-size", default=1 << 20, show_default=True)
@click.option("-T", "--workers", type=int, default=None, help="Worker processes or actors (default: from the cores).")
@click.option("--cluster", default=None, metavar="ADDRESS", help="Run frames on Ray (auto, ray://..., local).")
@_opts
def enwik8(path, frame_size, workers, cluster, lanes, max_bytes, threads):
    """Full enwik8 (sha256 checked), resumable: the frames are coded in groups of as many frames as
    there are workers (each group one stream, its frames in parallel), each group's result cached
    in bench/results/cache/enwik8/, so an interrupted run continues where it stopped."""
    from tqdm import tqdm

    data = Path(path).read_bytes()
    if hashlib.sha256(data).hexdigest() != ENWIK8_SHA256:
        raise SystemExit(f"{path}: not enwik8 (sha256 mismatch)")
    session = Session(threads=threads, workers=workers, cluster=cluster)
    opts = Options(max_lanes=lanes, frame_size=frame_size)
    cache = RESULTS / "cache" / "enwik8"
    cache.mkdir(parents=True, exist_ok=True)
    n = (len(data) + frame_size - 1) // frame_size
    group = session.executor().slots
    total = 0
    t0 = time.perf_counter()
    bar = tqdm(total=len(data), unit="B", unit_scale=True, desc="enwik8")
    for g in range(0, n, group):
        last = min(n, g + group)
        f = cache / f"{frame_size}-{g:05d}-{last:05d}.json"
        chunk = data[g * frame_size:last * frame_size]
        if f.exists():
            total += json.loads(f.read_text())["size"]
            bar.update(len(chunk))
            continue
        blob = compress(chunk, session, opts)
        if decompress(blob, session) != chunk:
            raise SystemExit(f"frames {g}..{last - 1}: ROUND TRIP FAILED")
        f.write_text(json.dumps(dict(frames=[g, last], bytes=len(chunk), size=len(blob))))
        total += len(blob)
        bar.update(len(chunk))
    bar.close()
    print(json.dumps(dict(file="enwik8", bytes=len(data), size=total, bpb=round(8 * total / len(data), 4),
                          workers=group, cluster=cluster, seconds_this_run=round(time.perf_counter() - t0, 1))))
    session.close()


@main.command()
def readme():
    """Rewrite the results section of docs/benchmarks.md from the latest JSON of each suite."""
    latest = {}
    for p in sorted(RESULTS.glob("*-20*.json")):
        doc = json.loads(p.read_text())
        latest[doc["suite"]] = (p, doc)
    parts = ["<!-- results:begin (generated by `python -m bench readme`; do not edit) -->", ""]
    for suite_name, (p, doc) in sorted(latest.items()):
        parts.append(markdown(doc))
        parts.append(f"Source: `bench/results/{p.name}`, plot `bench/results/{p.with_suffix('.png').name}`; "
                     f"backend `{doc['backend']}`.\n")
    fuzz = RESULTS / "fuzz.json"
    if fuzz.exists():
        f = json.loads(fuzz.read_text())
        parts += ["### Decode fuzzing (tests/fuzz/campaign.py)", "",
                  f"{f['inputs']} mutated files ({f['date']}): {f['outcomes']}; crashes {f['crashes']}, "
                  f"hangs {f['hangs']}, silent wrong outputs {f['silent_wrong_outputs']}. "
                  "Source: `bench/results/fuzz.json`.", ""]
    parts += ["Published results, for context (not measured here):", "", published_table(),
              "<!-- results:end -->"]
    readme_path = ROOT / "docs" / "benchmarks.md"
    text = readme_path.read_text()
    a = text.index("<!-- results:begin")
    b = text.index("<!-- results:end -->") + len("<!-- results:end -->")
    readme_path.write_text(text[:a] + "\n".join(parts) + text[b:])
    print("docs/benchmarks.md results section updated")


if __name__ == "__main__":
    main()
