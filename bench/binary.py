"""Binary frames against xz -9e and zstd -19 (no model involved).

    .venv/bin/python bench/binary.py [FILE...]

For each file (default: the binary files of the Canterbury, Calgary and Snappy corpora), the
stream nacrith writes when no text run pays off (``nacrith.policy.binary_stream``: per frame the
smallest of zstd -19, raw LZMA2 with searched settings, stored; container included) is decoded,
compared with the original, and set against ``xz -9e`` and ``zstd -19`` of the whole file.
Rows go to bench/results/binary.jsonl; the table to bench/results/binary.md.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.__main__ import CLASSIC  # noqa: E402
from bench.common import append_row, cpu_model, find_corpora  # noqa: E402
from nacrith import lzma2  # noqa: E402
from nacrith.session import Session  # noqa: E402
from nacrith.policy import binary_stream  # noqa: E402
from nacrith.decoder import decompress  # noqa: E402
from nacrith.format import iter_frames  # noqa: E402
from nacrith.format import FRAME_NAMES, EndFrame  # noqa: E402

RESULTS = Path(__file__).parent / "results"
DEFAULT = ["canterbury/kennedy.xls", "canterbury/ptt5", "canterbury/sum", "calgary/geo", "calgary/obj1",
           "calgary/obj2", "snappy/fireworks.jpeg", "snappy/geo.protodata", "snappy/kppkn.gtb",
           "snappy/paper-100k.pdf"]  # calgary/pic is the same file as canterbury/ptt5


def settings(blob: bytes) -> str:
    """Frame kinds of ``blob``, with the filter and (lc, lp, pb) of its LZMA2 frames."""
    out = []
    for fr in iter_frames(blob):
        if isinstance(fr, EndFrame):
            break
        name = FRAME_NAMES[fr.kind]
        if name == "lzma2":
            p = bytes(fr.payload)
            filt = lzma2.FILTER_NAMES[p[0]] + (f"({p[1] + 1})" if p[0] == lzma2.FILTER_DELTA else "")
            at = 3 if p[0] == lzma2.FILTER_DELTA else 2
            # first LZMA2 chunk: control byte, 2 + 2 size bytes, then the props byte when it
            # resets them (control >= 0xC0; xz specification 5.3.1)
            props = p[at + 5] if len(p) > at + 5 else 0
            lc_lp_pb = (props % 9, props // 9 % 5, props // 45) if p[at] >= 0xC0 else None
            name += f" {filt} lc/lp/pb={'/'.join(map(str, lc_lp_pb)) if lc_lp_pb else '?'}"
        out.append(name)
    return ", ".join(out)


def measure(path: Path) -> dict:
    data = path.read_bytes()
    t = time.perf_counter()
    blob = binary_stream(data)
    seconds = time.perf_counter() - t
    assert decompress(blob, Session(model=os.devnull)) == data, f"{path}: round trip failed"
    xz, zs = len(CLASSIC["xz -9e"](data)), len(CLASSIC["zstd -19"](data))
    return dict(file=f"{path.parent.name}/{path.name}", bytes=len(data),
                sha256=hashlib.sha256(data).hexdigest(), date=datetime.date.today().isoformat(),
                cpu=cpu_model(), nacrith=len(blob), xz=xz, zstd=zs, vs_xz=len(blob) - xz,
                frames=settings(blob), seconds=round(seconds, 2), verified=True)


def table(rows: list[dict]) -> str:
    """Markdown table of ``rows``; the smallest of xz -9e, zstd -19 and nacrith in bold."""
    def cells(r: dict) -> list[str]:
        best = min(r[k] for k in ("xz", "zstd", "nacrith"))
        return [f"**{r[k]:,}**" if r[k] == best else f"{r[k]:,}" for k in ("xz", "zstd", "nacrith")]

    lines = ["| file | bytes | xz -9e | zstd -19 | nacrith | vs xz -9e | frames | encode s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['file']} | {r['bytes']:,} | {' | '.join(cells(r))} "
                     f"| {r['vs_xz']:+,} ({100 * r['vs_xz'] / r['xz']:+.1f} %) | {r['frames']} | {r['seconds']} |")
    tot = {k: sum(r[k] for r in rows) for k in ("bytes", "xz", "zstd", "nacrith")}
    d = tot["nacrith"] - tot["xz"]
    lines.append(f"| **total** | {tot['bytes']:,} | {' | '.join(cells(tot))} "
                 f"| {d:+,} ({100 * d / tot['xz']:+.1f} %) | | |")
    return "\n".join(lines)


@click.command()
@click.argument("files", nargs=-1)
def main(files):
    corpora = find_corpora()
    paths = [Path(f) if Path(f).exists() else corpora / f for f in (files or DEFAULT)]
    rows = [measure(p) for p in paths]
    for r in rows:
        append_row(RESULTS / "binary.jsonl", r)
    md = (f"{rows[0]['date']}, {rows[0]['cpu']}. `.venv/bin/python bench/binary.py`: the stream nacrith "
          "writes for a file with no text worth the LLM (container included), decoded and compared "
          "with the original; sizes in bytes.\n\n" + table(rows) + "\n")
    (RESULTS / "binary.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
