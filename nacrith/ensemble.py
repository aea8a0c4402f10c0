"""The per-lane ensemble model (heads + mixer) built from ``EnsembleParams``.

The heads themselves run in native code (``native/ensemble.c``: token n-gram head, online
log-space bias head, context mixer, match model, confidence skip) so that both sides compute bit-identical
probabilities. Their parameters (``nacrith.params.EnsembleParams``) are written to every stream
(``codec/FORMAT.md``, parameter ``0x05``) and read back by the decoder.

Sources: Nacrith paper (token n-gram interpolated low to high with lambda = c / (c + 5), bias
``b -= lr (p' - onehot)``, Hedge mixing lr 0.5 with initial LLM weight 0.85, skip below 1.5 bits);
geometric (log-linear) mixing with weight sets selected by a small context follows the PAQ
family of context-mixing compressors (M. Mahoney, "Adaptive weighing of context models for
lossless data compression", 2005).
"""

from __future__ import annotations

from . import _native
from .params import EnsembleParams


def lane_model(params: EnsembleParams, n_vocab: int, shared=None) -> "_native.LaneModel":
    """A fresh per-lane model (state starts empty at every frame) for a vocabulary of ``n_vocab``
    tokens, sharing the heads of ``shared`` (another lane's model) when given."""
    return _native.LaneModel(n_vocab, shared=shared, **params.native_kwargs())


def lane_models(params: EnsembleParams, n_vocab: int, n: int) -> list:
    """Models for the ``n`` lanes of a frame: sharing heads when ``params.shared_heads``."""
    first = lane_model(params, n_vocab)
    return [first] + [lane_model(params, n_vocab, first if params.shared_heads else None)
                      for _ in range(n - 1)]
