"""The package's import graph follows the layer table of docs/README.md ("Which way imports go").

Parsed with ``ast`` (nothing is imported): every ``import`` and ``from ... import`` of a
samix_hub module, also those inside functions, is an edge. The tests fail on a cycle, on an
edge from a lower layer to a higher one, on an import of the package root from inside, and
on a private name (``_x``) imported from another module.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "samix_hub"

#: Lower numbers sit lower; a module may import its own package, and the packages of lower
#: layers. Packages of one layer do not import each other. The table names packages (and the
#: four top-level modules), never single modules: there is no list of exceptions.
LAYERS: dict[str, int] = {
    "samix_hub._version": 0,
    "samix_hub.errors": 0,
    "samix_hub.format": 1,  # names, schemas and limits of every on-disk kind
    "samix_hub.fileio": 2,  # atomic writes, bounded reads, folder guards and locks
    "samix_hub.mixing": 3,  # λ, partners, masks, MixMethod, SAMixUp, the mixer losses
    "samix_hub.data": 3,  # data specs and data sets
    "samix_hub.models": 4,  # the networks (the mixer's λ arithmetic is mixing's)
    "samix_hub.export": 5,  # export, ONNX, int8, cards, load and validate, run folders read
    "samix_hub.train": 6,  # the loop, scenarios, run folders written
    "samix_hub.hub": 7,  # resolve, pull, push, the public classes' Hub methods
    "samix_hub.demo": 8,  # the offline demo
    "samix_hub.cli": 9,  # one module per command
    "samix_hub.__main__": 10,
    "samix_hub": 10,  # the public API
}


def package_of(module: str) -> str:
    """The entry of :data:`LAYERS` a module belongs to."""
    if module == "samix_hub":
        return module
    parts = module.split(".")
    key = ".".join(parts[:2])
    if key not in LAYERS:
        raise AssertionError(
            f"{module}: not in a package of the layer table of tests/test_layering.py"
        )
    return key


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


MODULES = _modules()


def layer_of(module: str) -> int:
    return LAYERS[package_of(module)]


def _imports(module: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(target module, imported names, line) of every samix_hub import in ``module``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "samix_hub" or target.startswith("samix_hub."):
                found.append((target, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "samix_hub" or alias.name.startswith("samix_hub."):
                    found.append((alias.name, [], node.lineno))
    return found


def _edges() -> dict[str, set[str]]:
    """module -> the samix_hub modules it imports (``from pkg import mod`` counts as ``mod``)."""
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, names, _ in _imports(module, path):
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            for dep in subs or [target]:
                if dep != module and dep in MODULES:
                    edges[module].add(dep)
    return edges


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_no_import_cycles():
    edges = _edges()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    assert cycles == []


def test_no_import_goes_up_a_layer():
    back = [
        f"{a} (layer {layer_of(a)}) -> {b} (layer {layer_of(b)})"
        for a, deps in sorted(_edges().items())
        for b in sorted(deps)
        if layer_of(b) > layer_of(a)
    ]
    assert back == []


def test_packages_of_one_layer_do_not_import_each_other():
    sideways = [
        f"{a} -> {b}"
        for a, deps in sorted(_edges().items())
        for b in sorted(deps)
        if package_of(a) != package_of(b) and layer_of(a) == layer_of(b)
    ]
    assert sideways == []


def test_no_inner_module_imports_the_package_root():
    offenders = [
        f"{module}:{line}"
        for module, path in MODULES.items()
        if module != "samix_hub"
        for target, names, line in _imports(module, path)
        if target == "samix_hub" and not (names and all(f"samix_hub.{n}" in MODULES for n in names))
    ]
    assert offenders == []


def _private_uses(module: str, path: Path) -> list[str]:
    """``from m import _x``, and ``mod._x`` on a module imported as ``from pkg import mod``."""
    found = []
    aliases = set()
    for target, names, line in _imports(module, path):
        for name in names:
            if f"{target}.{name}" in MODULES:
                aliases.add(name)
            elif name.startswith("_") and name != "__version__":
                found.append(f"{module}:{line} imports {name} from {target}")
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{module}:{node.lineno} uses {node.value.id}.{node.attr}")
    return found


def test_no_private_name_crosses_a_module():
    offenders = [hit for module, path in MODULES.items() for hit in _private_uses(module, path)]
    assert offenders == []


def test_every_import_of_our_own_names_resolves():
    """Also the imports inside functions, which only run on some paths: a moved or renamed name
    fails here, not in a user's command."""
    missing = []
    for module, path in MODULES.items():
        for target, names, line in _imports(module, path):
            if target not in MODULES:
                missing.append(f"{module}:{line} imports missing module {target}")
                continue
            loaded = importlib.import_module(target)
            for name in names:
                if name != "*" and f"{target}.{name}" not in MODULES and not hasattr(loaded, name):
                    missing.append(f"{module}:{line} imports missing {target}.{name}")
    assert missing == []


@pytest.mark.parametrize(
    "source, problem",
    [
        ("from .. import __version__\n", "root"),
        ("from ..export.cards import _fmt\n", "private"),
        ("from ..cli.mix import folder_sha256\n", "up"),
        ("from ..mixing.masks import apply_mask\n", "sideways"),
        ("from ..export import cards\nx = cards._fmt(1)\n", "attribute"),
    ],
)
def test_the_checks_catch_a_bad_import(tmp_path, source, problem):
    """Each check fires on a planted bad import (the checks above would pass vacuously else)."""
    path = tmp_path / "bad.py"
    path.write_text(source)
    ((target, names, _),) = _imports("samix_hub.data.bad", path)
    if problem == "attribute":
        assert _private_uses("samix_hub.data.bad", path) == ["samix_hub.data.bad:2 uses cards._fmt"]
    elif problem == "root":
        assert target == "samix_hub" and names == ["__version__"]
    elif problem == "private":
        assert names[0].startswith("_") and f"{target}.{names[0]}" not in MODULES
    elif problem == "sideways":
        assert package_of(target) != "samix_hub.data"
        assert layer_of(target) == layer_of("samix_hub.data.bad")
    else:
        assert layer_of(target) > layer_of("samix_hub.data.bad")


def test_the_module_map_names_every_module_and_no_other():
    """docs/README.md "Module map" lists every module by its path under ``samix_hub/``, and
    every path it lists exists (a moved or new module fails here until the map says so)."""
    text = (ROOT.parent / "docs" / "README.md").read_text()
    section = text[text.index("## Module map") :]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    named = {
        p
        for row in rows
        for p in re.findall(r"`([a-z_0-9]+(?:/[a-z_0-9]+)?\.py)`", row.split("|")[1])
    }
    ours = {path.relative_to(ROOT).as_posix() for path in MODULES.values()}
    outside = {p for p in named if not (ROOT / p).exists() and (ROOT.parent / p).exists()}
    assert sorted(ours - named) == []
    assert sorted(named - ours - outside) == []
