"""The layout's rules, checked from the source: chapters are plain packages that import earlier chapters;
the library never imports a chapter; no import cycles; ``FLAGS`` only in the command-line entry modules."""

from __future__ import annotations

import ast
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = sorted([*(ROOT / "src").rglob("*.py"), *(ROOT / "chapters").rglob("*.py")])
#: Modules that are command lines (``python -m …``): they alone may read absl's FLAGS.
ENTRY_MODULES = {"t2igan.cli", "t2igan.evaluate_folders"}


def module_name(path: pathlib.Path) -> str:
    relative = path.relative_to(ROOT / "src" if "src" in path.relative_to(ROOT).parts[:1] else ROOT)
    parts = list(relative.with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in SOURCES}


def imported_modules(name: str, path: pathlib.Path) -> set[str]:
    """Project modules ``name`` imports anywhere in its body (function-level imports included)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for candidate in candidates:
            # the longest project module the import names (``from a.b import c`` may import module a.b.c)
            while candidate and candidate not in MODULES:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                found.add(candidate)
    return found


GRAPH = {name: imported_modules(name, path) for name, path in MODULES.items()}


def test_the_graph_sees_the_chapter_chain():
    # a sanity check of the parser itself: chapter 5 imports chapters 3 and 4, chapter 2 imports chapter 1
    assert "chapters.ch3_attngan.damsm" in GRAPH["chapters.ch5_vlmgan.__main__"]
    assert "chapters.ch1_gan_int_cls.model" in GRAPH["chapters.ch2_stackgan.model"]
    assert "t2igan.torch_weights" in GRAPH["t2igan.metrics.inception"]


def test_no_import_cycles():
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for successor in sorted(GRAPH[node]):
            if state.get(successor) == "open":
                cycles.append(stack[stack.index(successor):] + [successor])
            elif successor not in state:
                visit(successor, stack + [successor])
        state[node] = "done"

    for node in sorted(GRAPH):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(" → ".join(cycle) for cycle in cycles)


def test_the_library_never_imports_a_chapter():
    offenders = {name: sorted(m for m in imports if m.startswith("chapters"))
                 for name, imports in GRAPH.items() if name.startswith("t2igan")}
    assert not {name: found for name, found in offenders.items() if found}


def test_chapters_import_only_earlier_chapters():
    def number(module):
        return int(module.split(".")[1][2:].split("_")[0])

    backwards = [(name, m) for name, imports in GRAPH.items() if name.startswith("chapters.ch")
                 for m in imports if m.startswith("chapters.ch") and number(m) > number(name)]
    assert not backwards


def test_no_dynamic_imports_of_project_code():
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        assert "import_module" not in text and "__import__" not in text, path


def test_flags_are_read_only_in_entry_modules():
    readers = []
    for name, path in MODULES.items():
        if name in ENTRY_MODULES or name.endswith(".__main__"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(node, ast.Name) and node.id == "FLAGS" for node in ast.walk(tree)) or \
                any(isinstance(node, ast.Attribute) and node.attr == "FLAGS" for node in ast.walk(tree)):
            readers.append(name)
    assert not readers, f"FLAGS used outside the command-line entry modules: {readers}"


def test_chapter_entry_modules_stay_short():
    for path in sorted((ROOT / "chapters").glob("ch*/__main__.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= 200, f"{os.path.relpath(path, ROOT)} has {lines} lines; move what is not the script into the chapter's modules"
