"""``nacrith -l``: what a file holds, without decoding it: each stream's header, params (a params
frame as what it changes), frames, sizes and bpb; what was read before a damage, then the error.
"""

from __future__ import annotations

import mmap
import os
import stat
import sys

import click

from ..engine import offload_name
from ..errors import NacrithError
from ..format import (FRAME_LLM, FRAME_NAMES, EndFrame, Frame, LLMParams, StreamHeader, StreamParser, Streams,
                      read_llm_payload)
from .files import check_input, check_paths


def rate(compressed: int, original: int) -> str:
    """'B bpb, ratio R' for a report line; '--- bpb, ratio ---' for an empty original, as xz -l."""
    if not original:
        return "--- bpb, ratio ---"
    return f"{8 * compressed / original:.4f} bpb, ratio {original / max(compressed, 1):.3f}"


def list_one(job, name: str) -> None:
    st = check_input(name)
    check_paths(name, st, None, special_ok=True)
    if name == "-":
        blob = sys.stdin.buffer.read()
    elif not stat.S_ISREG(st.st_mode):
        with open(name, "rb") as f:
            blob = f.read()
    else:
        with open(name, "rb") as f:  # mapped, not read: listing a huge file stays small in memory
            blob = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if os.path.getsize(name) else b""
    streams = Streams(blob)
    cur = None  # [parser, items, start, number] of the stream being read
    try:  # the structure (and the seek table) is checked as it is read
        while (item := streams.next()) is not None:
            if isinstance(item, StreamHeader):
                if cur is None:
                    click.echo(f"file:        {name}")
                cur = [streams.parser, [], streams.start, streams.count + 1]
            elif isinstance(item, EndFrame):
                _list_stream(*cur, streams.stream_size())
                cur = None
            else:
                cur[1].append(item)
        streams.close()
    except NacrithError:
        if cur is not None:  # what was read before a damage is listed, then the error (as xz -l)
            _list_stream(*cur, None)
        raise
    if streams.trailing:
        raise streams.trailing_error()


def _params_fields(p: LLMParams) -> dict[str, str]:
    """The lines of a params block as ``-l`` lists them, label -> value, in listing order (no
    device line in version 1, no writer line when none is recorded)."""
    w = p.window
    algo = f" (algorithm {p.algorithm})" if p.version >= 2 else ""
    fields = {"model": f"{p.model_label} sha256 {p.model_id.hex()}...",
              "backend": f"{p.backend_label} (id {p.backend_id.hex()})",
              "device": offload_name(p.offload) if p.version >= 2 else "",
              "writer": p.writer,
              "window": f"{w.size} tokens (sink {w.sink}, slide {w.slide})",
              "schedule": "lockstep (one token per lane per step on both sides)" if p.schedule else "",
              "ensemble": f"{p.ensemble.describe()}{algo}"}
    return {k: v for k, v in fields.items() if v}


def _list_stream(parser: StreamParser, items: list, start: int, n: int, size: int | None) -> None:
    """The listing of one stream of ``size`` bytes, ``start`` bytes into the file (its ``n``-th);
    ``size`` None: the stream is damaged, ``items`` are what was read before the damage."""
    end = parser.end
    data_frames = [x for x in items if isinstance(x, Frame)]
    header = parser.header
    content = 0
    if n > 1 or start:
        click.echo(f"stream {n}:    at offset {start}")
    click.echo(f"format:      nacrith stream v{header.version}, frame size {header.frame_size} bytes")
    # version 2: the header's params, then any params frame; a params frame lists only what it
    # changes (per-frame windows change just the window), with the data frame it applies from
    shown: dict[str, str] | None = None
    n_frames = 0
    for p in [header.params] + items:
        if isinstance(p, Frame):
            n_frames += 1
        if not isinstance(p, LLMParams):
            continue
        fields = _params_fields(p)
        if shown is None:
            for label, value in fields.items():
                click.echo(f"{label + ':':<13}{value}")
        else:
            changed = [f"{label} {value}" for label, value in fields.items() if shown.get(label) != value]
            changed += [f"no {label}" for label in shown if label not in fields]
            click.echo(f"{'params:':<13}from frame {n_frames + 1}: {'; '.join(changed) or 'unchanged'}")
        shown = fields
    if end is not None:
        click.echo(f"original:    {end.total_size} bytes, blake2b-64 {end.checksum.hex()}")
    lines = []
    for fr in data_frames:
        extra = ""
        body = len(fr.payload)
        if fr.kind == FRAME_LLM:
            try:
                counts, streams = read_llm_payload(fr.payload, fr.raw_size, fr.offset, fr.version)
            except NacrithError as e:  # listed as far as it goes, then the error
                for line in lines:
                    click.echo(line)
                raise e
            extra = f", {len(counts)} lanes, {sum(counts)} tokens"
            body = sum(len(x) for x in streams)
        content += body
        lines.append(f"  @{start + fr.offset:<10} {FRAME_NAMES[fr.kind]:6} {fr.raw_size:>10} -> {len(fr.payload):>10} "
                     f"bytes, {8 * len(fr.payload) / fr.raw_size:.4f} bpb, checksum {fr.checksum.hex()}{extra}")
    if end is None or size is None:  # a damaged stream: the frames read before the damage
        click.echo(f"frames:      {len(data_frames)} read before the damage")
    else:
        click.echo(f"compressed:  {size} bytes, {rate(size, end.total_size)}")
        click.echo(f"overhead:    {size - content} bytes (headers, params, lane tables, checksums, end)")
        click.echo(f"frames:      {len(data_frames)}{' (with seek table)' if end.seek_offset else ''}")
    for line in lines:
        click.echo(line)
