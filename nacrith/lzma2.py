"""Raw LZMA2 frames (frame type 7): the standard library's ``lzma`` with a filter chain and
literal / position settings chosen per frame by trial, instead of ``xz -9e``'s fixed ones.

Payload (``codec/FORMAT.md``, "Lzma2 frame")::

    Filter (1 byte) [Distance - 1 (1 byte), delta only] DictProp (1 byte) LZMA2 data

``LZMA2 data`` is a raw LZMA2 stream (.xz format specification 1.1.0, section 5.3.1: chunks, then
the end marker ``0x00``); its chunk headers carry lc / lp / pb, so the decoder needs only the
filter and the dictionary size. Dropping the .xz container (stream header, block header, index,
footer: ~48 bytes) and tuning lc / lp / pb and a branch-call-jump or delta filter per frame makes
binary frames smaller than ``xz -9e`` (``bench/binary.py``).
"""

from __future__ import annotations

import lzma

from .errors import FormatError

PRESET = 9 | lzma.PRESET_EXTREME
SEARCH_PRESET = 6  # settings are ranked on a sample at this (faster) preset
SAMPLE = 1 << 19  # bytes of the frame the search compresses (4 evenly spaced pieces when larger)
MAX_DICT = 1 << 26  # 64 MiB, as xz -9
MIN_DICT = 1 << 12  # liblzma's minimum

# Filter byte -> liblzma filter id (xz format specification, section 5.3). 1 (delta) is followed by
# a byte holding the distance minus one.
FILTER_NONE, FILTER_DELTA = 0, 1
FILTERS = {0: None, 1: lzma.FILTER_DELTA, 2: lzma.FILTER_X86, 3: lzma.FILTER_POWERPC,
           4: lzma.FILTER_IA64, 5: lzma.FILTER_ARM, 6: lzma.FILTER_ARMTHUMB, 7: lzma.FILTER_SPARC}
FILTER_NAMES = {0: "-", 1: "delta", 2: "x86", 3: "powerpc", 4: "ia64", 5: "arm", 6: "armthumb", 7: "sparc"}
DEFAULT_LITERALS = (3, 0, 2)  # lc, lp, pb of every xz preset
_FILTER_TRIALS = [(0, 0)] + [(1, d) for d in (1, 2, 3, 4)] + [(f, 0) for f in (2, 3, 5, 6, 7)]
_LITERAL_TRIALS = [(0, 0, 0), (1, 0, 0), (4, 0, 0), (0, 0, 2), (3, 0, 0), (0, 2, 2), (2, 0, 0)]


def dict_size(prop: int) -> int:
    """Dictionary bytes of an LZMA2 dictionary property (xz specification 5.3.1): 0..39 give
    ``(2 | (p & 1)) << (p // 2 + 11)``, 40 gives 2^32 - 1.

    Raises: ValueError for ``prop`` outside 0..40."""
    if not 0 <= prop <= 40:
        raise ValueError(f"LZMA2 dictionary property {prop} outside 0..40")
    return 0xFFFF_FFFF if prop == 40 else (2 | (prop & 1)) << (prop // 2 + 11)


def dict_prop(n: int) -> int:
    """The smallest dictionary property whose size holds ``n`` bytes (at least 4 KiB, at most
    ``MAX_DICT``)."""
    n = min(max(n, MIN_DICT), MAX_DICT)
    return next(p for p in range(41) if dict_size(p) >= n)


def _chain(filt: int, dist: int, dictionary: int, literals: tuple[int, int, int] | None,
           preset: int | None) -> list[dict]:
    chain = []
    if filt == FILTER_DELTA:
        chain.append({"id": lzma.FILTER_DELTA, "dist": dist})
    elif filt != FILTER_NONE:
        chain.append({"id": FILTERS[filt]})
    last: dict = {"id": lzma.FILTER_LZMA2, "dict_size": dictionary}
    if preset is not None:
        last["preset"] = preset
    if literals is not None:
        last["lc"], last["lp"], last["pb"] = literals
    chain.append(last)
    return chain


def _sample(raw: bytes) -> bytes:
    if len(raw) <= SAMPLE:
        return raw
    piece, step = SAMPLE // 4, (len(raw) - SAMPLE // 4) // 3
    return b"".join(raw[i * step:i * step + piece] for i in range(4))


def _size(data: bytes, filt: int, dist: int, literals: tuple[int, int, int]) -> int:
    chain = _chain(filt, dist, dict_size(dict_prop(len(data))), literals, SEARCH_PRESET)
    return len(lzma.compress(data, format=lzma.FORMAT_RAW, filters=chain))


def choose(raw: bytes, keep: int = 2) -> list[tuple[int, int, tuple[int, int, int]]]:
    """The ``keep`` best (filter, delta distance, (lc, lp, pb)) on a sample of ``raw`` at
    ``SEARCH_PRESET``, best first: filters with xz's literal settings first, then literal
    settings with each of the two best filters (a filter that changes nothing ties with none and
    is skipped). The sample's ranking is only a guide, so ``candidates`` encodes several."""
    s = _sample(raw)
    ranked = sorted((_size(s, f, d, DEFAULT_LITERALS), (f, d)) for f, d in _FILTER_TRIALS)
    filters = [ranked[0][1]] + [fd for n, fd in ranked[1:] if n != ranked[0][0]][:1]
    trials = sorted((_size(s, f, d, lit), (f, d, lit)) for f, d in filters
                    for lit in [DEFAULT_LITERALS] + _LITERAL_TRIALS)
    return [t for _, t in trials[:keep]]


def encode(raw: bytes, filt: int, dist: int = 0, literals: tuple[int, int, int] = DEFAULT_LITERALS) -> bytes:
    """Payload of an Lzma2 frame for ``raw`` at xz -9e strength with the given settings.

    Args:
        raw: 1..2^30 bytes.
        filt: a key of ``FILTERS``; dist: delta distance 1..256 when ``filt`` is delta.
        literals: (lc, lp, pb), lc + lp <= 4, pb <= 4.
    Raises: ValueError for settings liblzma rejects."""
    prop = dict_prop(len(raw))
    head = bytes([filt]) + (bytes([dist - 1]) if filt == FILTER_DELTA else b"") + bytes([prop])
    chain = _chain(filt, dist, dict_size(prop), literals, PRESET)
    return head + lzma.compress(raw, format=lzma.FORMAT_RAW, filters=chain)


def candidates(raw: bytes) -> list[bytes]:
    """Lzma2 payloads worth comparing for ``raw``: xz -9e's own settings first (so a frame is
    never larger than xz -9e's raw LZMA2 data plus 2 bytes), then the two best settings of the
    search (``choose``) when they differ from it."""
    default = (FILTER_NONE, 0, DEFAULT_LITERALS)
    return [encode(raw, *c) for c in [default] + [c for c in choose(raw) if c != default]]


def decode(payload: bytes, raw_size: int, where: str) -> bytes:
    """Original bytes of an Lzma2 frame payload. The dictionary is capped at ``raw_size``
    (rounded up to 4 KiB): no match reaches further back, so memory stays bounded by the frame.

    Raises: FormatError (naming ``where``) for an unknown filter, a dictionary property over 40,
    corrupt LZMA2 data, or data that does not end exactly after ``raw_size`` bytes."""
    if len(payload) < 2:
        raise FormatError(f"{where}: lzma2 payload of {len(payload)} bytes is too short")
    filt, pos, dist = payload[0], 1, 0
    if filt not in FILTERS:
        raise FormatError(f"{where}: unknown lzma2 filter {filt}")
    if filt == FILTER_DELTA:
        dist, pos = payload[1] + 1, 2
    if pos >= len(payload) or payload[pos] > 40:
        raise FormatError(f"{where}: bad lzma2 dictionary property")
    chain = _chain(filt, dist, min(dict_size(payload[pos]), max(raw_size, MIN_DICT)), None, None)
    d = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=chain)
    try:
        raw = d.decompress(payload[pos + 1:], max_length=raw_size + 1)
    except lzma.LZMAError as e:
        raise FormatError(f"{where}: corrupt lzma2 payload ({e})") from None
    if not d.eof or d.unused_data or len(raw) != raw_size:
        raise FormatError(f"{where}: lzma2 payload does not end where it should")
    return raw
