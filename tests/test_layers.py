"""The package's layers: every import points down (module level or inside a function), no
circle, and no module grows past ~450 lines. ``LAYERS`` is the architecture, bottom first (the
package docstring of ``nacrith`` describes it): a module may import modules of its own layer
or below, never above; within a layer, no circle."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "nacrith"

LAYERS = [
    # pure: no numpy, llama.cpp or native code
    ["nacrith._version", "nacrith.errors", "nacrith.params"],
    ["nacrith.format.wire", "nacrith.format.header", "nacrith.format.frames", "nacrith.format.parser",
     "nacrith.format.writer", "nacrith.format"],
    ["nacrith.options"],
    # the predictor and the binary codecs
    ["nacrith.runtime", "nacrith.model", "nacrith.backend", "nacrith.coder", "nacrith.ensemble", "nacrith.segment", "nacrith.lzma2",
     "nacrith.binary"],
    ["nacrith.lanes", "nacrith.probe"],
    # one loaded model and its checks; where frames run (they know nothing of the codec)
    ["nacrith.engine"],
    ["nacrith.executors", "nacrith.scheduler"],
    # the codec
    ["nacrith.llm_frame"],
    ["nacrith.encoder", "nacrith.decoder"],
    ["nacrith.session", "nacrith.policy"],
    ["nacrith.stream"],
    ["nacrith"],  # the package: its API imports lazily from the layers below
    ["nacrith.cli.files", "nacrith.cli.listing", "nacrith.cli.options", "nacrith.cli.modes", "nacrith.cli.main",
     "nacrith.cli", "nacrith.cli.__main__", "nacrith.__main__"],
]
MAX_LINES = 460


def _modules() -> dict[str, Path]:
    mods = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = p
    return mods


def _imports(name: str, path: Path, mods: dict) -> set[str]:
    """The package modules ``name`` imports anywhere in its code (functions included)."""
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[:len(pkg.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("nacrith"):
                continue
            for a in node.names:
                full = f"{mod}.{a.name}"
                if full in mods:
                    out.add(full)
                elif a.name == "_native" or full.startswith("nacrith._native"):
                    continue  # the compiled extension, below everything
                elif mod in mods:
                    out.add(mod)
                else:
                    raise AssertionError(f"{name} imports {mod}, which does not exist")
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in mods}
    out.discard(name)
    return out


def test_every_module_is_in_a_layer():
    placed = {m for layer in LAYERS for m in layer}
    assert set(_modules()) == placed, (sorted(set(_modules()) - placed), sorted(placed - set(_modules())))


def test_every_import_points_down_and_there_is_no_circle():
    mods = _modules()
    level = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    graph = {m: _imports(m, p, mods) for m, p in mods.items()}
    up = [f"{m} imports {t}" for m, ts in graph.items() for t in ts if level[t] > level[m]]
    assert not up, up
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                raise AssertionError("circle: " + " -> ".join(stack[stack.index(t):] + [m, t]))
            if not state.get(t):
                visit(t, stack + [m])
        state[m] = 2

    for m in sorted(mods):
        if not state.get(m):
            visit(m, [])


def test_the_check_sees_a_circle(tmp_path):
    """The walker finds function-level imports (a circle through one would otherwise pass)."""
    a = tmp_path / "a.py"
    a.write_text("def f():\n    from .b import g\n")
    mods = {"nacrith.a": a, "nacrith.b": tmp_path / "b.py"}
    assert _imports("nacrith.a", a, mods) == {"nacrith.b"}


def test_no_module_is_longer_than_the_limit():
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long
