"""The package's structure, as docs/architecture.md states it: layers that import one way
(import-linter's contracts in pyproject.toml), no import cycle counting the imports inside
functions, one subpackage per concern, every artifact file name spelled in
``cnnzoo.storage.layout`` only, no reach into another module's private names, and
function-level imports only for the heavy dependencies.

The source is read as text (``ast``), so these tests load neither TensorFlow nor kfp.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cnnzoo.storage import layout

REPO = Path(__file__).resolve().parent.parent
#: Repository folder -> the package name it installs as (pyproject.toml's package-dir).
SOURCE_ROOTS = {
    "cnnzoo": "cnnzoo",
    "components": "cnnzoo.components",
    "pipelines": "cnnzoo.pipelines",
}
#: Imported inside functions only (seconds to import, or only needed on one path).
HEAVY = {
    "tensorflow",
    "keras",
    "kfp",
    "docker",
    "matplotlib",
    "kubernetes",
    "tensorboard",
    "google",
    "requests",
}


def _modules() -> Iterator[tuple[str, Path, ast.Module]]:
    for folder, package in SOURCE_ROOTS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            yield ".".join([package, *parts]), path, ast.parse(path.read_text(), str(path))


MODULES = {name: (path, tree) for name, path, tree in _modules()}


def _imports(tree: ast.Module, module: str) -> Iterator[tuple[ast.stmt, list[str], bool]]:
    """Every import statement: the modules it names (resolved), and whether it sits in a
    function."""

    def visit(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.stmt, list[str], bool]]:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                yield child, [a.name for a in child.names], in_function
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: resolve against this module's package
                    pkg = module.split(".")[: len(module.split(".")) - child.level]
                    base = ".".join([*pkg, *([base] if base else [])])
                names = [f"{base}.{a.name}" for a in child.names]
                # `from pkg import module` names the module, `from module import name` the module
                yield child, [n if n in MODULES else base for n in names], in_function
            else:
                yield from visit(child, inside)

    yield from visit(tree, False)


def _internal_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, (_path, tree) in MODULES.items():
        for _node, targets, _in_function in _imports(tree, name):
            for target in targets:
                while target and target not in MODULES:
                    target = target.rpartition(".")[0]
                if target and target != name and target.startswith("cnnzoo"):
                    graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
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
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in graph:
        if v not in index:
            strong(v)
    return found


def test_import_linter_contracts_are_kept():
    """`lint-imports` (pyproject.toml's layer and forbidden-dependency contracts) passes."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "lint-imports is not installed (dev extra import-linter)"
    done = subprocess.run([exe, "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_counting_function_level_imports():
    graph = _internal_graph()
    # The graph is real: the CLI reaches the training loop, components reach the tasks.
    assert "cnnzoo.training.train" in graph["cnnzoo.cli.steps"]
    assert any(t.startswith("cnnzoo.orchestration") for t in graph["cnnzoo.components.train"])
    assert _cycles(graph) == []


def test_one_subpackage_per_concern_and_few_flat_modules():
    root = REPO / "cnnzoo"
    packages = sorted(p.parent.name for p in root.glob("*/__init__.py"))
    assert len(packages) >= 6, packages
    for name in packages:
        doc = ast.get_docstring(ast.parse((root / name / "__init__.py").read_text()))
        assert doc and "May import" in doc, f"cnnzoo/{name}/__init__.py: say its job and imports"
    flat = sorted(p.name for p in root.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(flat) <= 4, flat


def _file_names() -> set[str]:
    names = {
        value
        for key, value in vars(layout).items()
        if key.isupper() and isinstance(value, str) and "." in value
    }
    names |= set(layout.REPORT_FILES.values())
    return names


def _string_constants(tree: ast.Module) -> Iterator[ast.Constant]:
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                yield node


def test_every_artifact_file_name_is_spelled_once():
    names = _file_names()
    assert {"split.json", "manifest.json", "model.keras", "run-manifest.json"} <= names
    spelled = []
    for module, (path, tree) in MODULES.items():
        if module == "cnnzoo.storage.layout":
            continue
        spelled += [
            f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}"
            for node in _string_constants(tree)
            if node.value in names or any(node.value.endswith("/" + n) for n in names)
        ]
    assert spelled == [], "import these from cnnzoo.storage.layout:\n" + "\n".join(spelled)


def test_no_module_reaches_into_another_modules_private_names():
    found = []
    for module, (path, tree) in MODULES.items():
        aliases = {}  # local name -> cnnzoo module it binds
        for node, targets, _ in _imports(tree, module):
            if isinstance(node, ast.ImportFrom):
                for alias, target in zip(node.names, targets, strict=True):
                    private = alias.name.startswith("_") and not alias.name.startswith("__")
                    if target.startswith("cnnzoo") and private and target != module:
                        found.append(f"{path.relative_to(REPO)}:{node.lineno}: {alias.name}")
                    if target in MODULES:
                        aliases[alias.asname or alias.name] = target
            else:
                for alias in node.names:
                    if alias.asname and alias.name in MODULES:
                        aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value.id}.{node.attr}")
    assert found == []


def test_function_level_imports_only_for_heavy_dependencies():
    """Imports sit at the top of a module; inside a function only a heavy dependency
    (:data:`HEAVY`), and anything in a KFP component's body (KFP ships only the function's
    source into the container) or the pipeline definition's kfp import of the runners."""
    found = []
    for module, (path, tree) in MODULES.items():
        if module.startswith("cnnzoo.components."):
            continue
        for node, targets, in_function in _imports(tree, module):
            tops = {t.split(".")[0] for t in targets}
            if in_function and not tops <= HEAVY and targets != ["cnnzoo.pipelines.cnn_comparison"]:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {', '.join(targets)}")
    assert found == []


@pytest.mark.parametrize(
    "component", sorted(m for m in MODULES if m.startswith("cnnzoo.components."))
)
def test_every_component_body_is_one_call(component):
    path, tree = MODULES[component]
    short = component.rpartition(".")[2]
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name != "op"]
    assert [f.name for f in functions] == [short], path
    body = [
        stmt
        for stmt in functions[0].body
        if not isinstance(stmt, (ast.Import, ast.ImportFrom))
        and not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))
    ]
    assert len(body) == 1, f"{path}: {len(body)} statements; call one task function"
    call = body[0].value if isinstance(body[0], (ast.Expr, ast.Return)) else None
    assert isinstance(call, ast.Call), f"{path}: the body must be one call"
    assert ast.unparse(call.func).startswith("tasks."), ast.unparse(call.func)
