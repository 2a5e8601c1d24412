"""The package keeps the dependency order written in docs/architecture.md: every import inside
maskdistill/ is allowed by the table there, no two modules import each other (directly or round a
longer circle), and the probes load without matplotlib."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "maskdistill"
DOC = ROOT / "docs" / "architecture.md"
PROBE_FAMILIES = ("representation", "curvature", "decisions")


def allowed_table(text: str) -> Dict[str, Set[str]]:
    """room -> the rooms it may import, from the table between the layering-table markers."""
    block = text.split("<!-- layering-table: start -->")[1].split("<!-- layering-table: end -->")[0]
    table: Dict[str, Set[str]] = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or cells[0] in ("room", "") or set(cells[0]) <= {"-"}:
            continue
        table[cells[0]] = {r.strip() for r in cells[1].split(",") if r.strip()}
    return table


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_modules() -> Dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, source: str, is_package: bool, known: Iterable[str]) -> List[Tuple[int, str]]:
    """(line, imported maskdistill module) for every import statement, at any depth; ``from X import
    Y`` names the module X.Y when that is a module, else X."""
    known = set(known)
    here = name.split(".") if is_package else name.split(".")[:-1]
    out: List[Tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "maskdistill"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "maskdistill":
                continue
            subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in known]
            out += [(node.lineno, s) for s in subs] or [(node.lineno, mod)]
    return out


def room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def violations(modules: Dict[str, str], table: Dict[str, Set[str]]) -> List[str]:
    """Imports against the table, and the probe families' own rule; ``modules``: name -> source."""
    bad = []
    for name, source in modules.items():
        room = room_of(name)
        if room in ("", "__main__"):
            continue
        if room not in table:
            bad.append(f"{name}: room {room!r} is not in the dependency table of docs/architecture.md")
            continue
        for line, dep in imports_of(name, source, name in PACKAGES, modules):
            target = room_of(dep)
            if target == room or target == "":
                if target == room == "probes":
                    bad += _probe_family_rule(name, line, dep)
                continue
            if target not in table[room]:
                bad.append(
                    f"{name}:{line} imports {dep}, but {room} may import only "
                    f"{', '.join(sorted(table[room])) or 'nothing'}"
                )
    return bad


def _probe_family_rule(name: str, line: int, dep: str) -> List[str]:
    me, other = name.split(".")[2:3], dep.split(".")[2:3]
    if not me or not other or me == other:
        return []
    if me[0] == "core" and other[0] in PROBE_FAMILIES:
        return [f"{name}:{line} imports {dep}: probes.core must not import a probe family"]
    if me[0] in PROBE_FAMILIES and other[0] in PROBE_FAMILIES:
        return [f"{name}:{line} imports {dep}: probe families must not import each other"]
    return []


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan), plus self-imports."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def import_graph(modules: Dict[str, str]) -> Dict[str, Set[str]]:
    return {
        name: {dep for _, dep in imports_of(name, src, name in PACKAGES, modules) if dep in modules}
        for name, src in modules.items()
    }


SOURCES = {name: path.read_text() for name, path in package_modules().items()}
PACKAGES = {name for name, path in package_modules().items() if path.name == "__init__.py"}
TABLE = allowed_table(DOC.read_text())


def test_table_names_every_room_of_the_package():
    rooms = {room_of(n) for n in SOURCES} - {"", "__main__"}
    assert rooms <= set(TABLE), f"rooms missing from docs/architecture.md: {sorted(rooms - set(TABLE))}"
    assert {"config", "runs", "data", "models", "probes", "train", "report", "cli"} <= set(TABLE)
    assert "cli" not in set().union(*TABLE.values()), "nothing may import the CLI"


def test_every_import_follows_the_dependency_order():
    assert violations(SOURCES, TABLE) == []


def test_no_import_cycles_between_modules():
    assert cycles(import_graph(SOURCES)) == []


def test_the_checks_catch_what_they_guard_against():
    # A data module importing train, probes.core importing a family, and a two-module circle.
    fake = dict(SOURCES)
    fake["maskdistill.data.bad"] = "from maskdistill.train.loop import run\n"
    fake["maskdistill.probes.core.bad"] = "from maskdistill.probes.curvature import hessian\n"
    found = violations(fake, TABLE)
    assert any(f.startswith("maskdistill.data.bad:1 imports maskdistill.train.loop") for f in found)
    assert any("probes.core must not import a probe family" in f for f in found)
    graph = import_graph(SOURCES)
    graph["maskdistill.runs.checkpoint"] = graph.get("maskdistill.runs.checkpoint", set()) | {
        "maskdistill.runs.metrics"
    }
    graph["maskdistill.runs.metrics"] = graph.get("maskdistill.runs.metrics", set()) | {"maskdistill.runs.checkpoint"}
    assert ["maskdistill.runs.checkpoint", "maskdistill.runs.metrics"] in cycles(graph)


def test_table_parser_reads_the_markdown():
    text = (
        "x\n<!-- layering-table: start -->\n| room | may import |\n|---|---|\n| a | |\n| b | a, c |\n"
        "<!-- layering-table: end -->\n"
    )
    assert allowed_table(text) == {"a": set(), "b": {"a", "c"}}


@pytest.mark.parametrize(
    "code",
    [
        "import maskdistill.probes",
        "from maskdistill.probes import probe_names; probe_names()",  # every probe family registered
        "import maskdistill.probes.core.runner, maskdistill.cli",
    ],
)
def test_probes_and_cli_load_without_matplotlib(code):
    check = f"{code}\nimport sys\nprint('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_an_analysis_without_report_does_not_load_matplotlib(tmp_path):
    code = (
        "import sys\nfrom maskdistill.cli import main\n"
        f"rc = main(['analyze', '--model', 'vit=timm:test_vit?pretrained=false', '--data', 'builtin:val',"
        f" '--probes', 'attention_distance', '--images', '4', '--out', {str(tmp_path)!r}, '--no-report'])\n"
        "print(rc, 'matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip().splitlines()[-1] == "0 False", out.stderr[-2000:]
    assert (tmp_path / "vit" / "attention_distance.csv").is_file()


def test_no_python_file_over_300_lines_or_function_over_60():
    long_files = [f"{n} ({len(s.splitlines())} lines)" for n, s in SOURCES.items() if len(s.splitlines()) > 300]
    long_fns = []
    for name, src in SOURCES.items():
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 60:
                    long_fns.append(f"{name}.{node.name} ({n} lines)")
    assert long_files == [] and long_fns == []


def test_no_docstring_or_help_text_names_an_issue_a_session_or_outside_files():
    pattern = re.compile(r"\b(issue|session)s? ?#?\d+|\.\./|DESIGN\.md|PROBES\.md|shared/", re.IGNORECASE)
    hits = [
        f"{n}:{i}: {line.strip()}"
        for n, s in SOURCES.items()
        for i, line in enumerate(s.splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []
