"""Imports point one way (DESIGN.md): no cycle between the project's modules; the library never
imports preparation (only the command-line entry point does); preparation's engine never imports
a dataset package (the registry lists them); cli.py stays small and names no dataset."""
import ast
import re
from pathlib import Path

from data_prep.registry import DATASETS

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fer_keras", "data_prep")


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    """module -> project modules it imports (at any depth of the file, lazy imports included)."""
    files = {_module(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                # `from pkg import mod` imports pkg.mod; `from pkg import name` imports pkg
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for target in targets:  # the longest project module the import names
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.add(target)
        graph[name] = found
    return graph


def test_no_import_cycle():
    graph, state, cycles = _graph(), {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_library_never_imports_preparation():
    offenders = sorted(m for m, deps in _graph().items()
                       if m.startswith("fer_keras") and m != "fer_keras.cli" and any(d.startswith("data_prep") for d in deps))
    assert not offenders, f"fer_keras modules importing data_prep: {offenders}"


def test_engine_never_imports_a_dataset_package():
    engine = {m: deps for m, deps in _graph().items() if m.startswith("data_prep")
              and not m.startswith(("data_prep.datasets", "data_prep.bench")) and m != "data_prep.registry"}
    offenders = sorted(m for m, deps in engine.items() if any(d.startswith("data_prep.datasets") for d in deps))
    assert not offenders, f"engine modules importing a dataset package: {offenders}"


def test_cli_is_small_and_names_no_dataset():
    text = (ROOT / "fer_keras" / "cli.py").read_text()
    assert len(text.splitlines()) < 400
    for name in DATASETS:
        spellings = {name, re.sub(r"(\D)(\d)", r"\1-\2", name, count=1)}  # bu4dfe, bu-4dfe
        hits = [s for s in spellings if re.search(rf"\b{re.escape(s)}\b", text, re.IGNORECASE)]
        assert not hits, f"fer_keras/cli.py names dataset {name!r}"


def test_opensmile_guard_sits_in_one_place():
    """Only data_prep/__init__.py imports openSMILE first; nothing else re-imports data_prep for the order."""
    hits = [str(p.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
            if re.search(r"^\s*import data_prep\b|import_module\(\"data_prep\"\)", p.read_text(), re.MULTILINE)]
    assert hits == [], hits
