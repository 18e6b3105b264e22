"""The package's shape, checked from its source with `ast` (nothing is imported): packages import
only from below (no cycles), a function-level import only defers an optional heavy dependency
and says so, modules stay readable (at most 500 lines), and a `_private` name stays in its home.

Why from source: a cycle that Python tolerates today (one side imports inside a function) is
still a cycle for a reader, so function-level imports count as edges too; and importing the
package would hide exactly the order effects these rules are about.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "mtrlib"
MAX_LINES = 500


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    line: int
    target: str  # the module imported (dotted); for `from M import a`, M.a when that is a module
    names: tuple[str, ...]  # the names taken (`from M import a, b`); () for `import M`
    in_function: bool
    commented: bool  # a comment on the import's line or the line above
    type_only: bool  # under `if TYPE_CHECKING:` (never executed)


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (a package is its __init__)."""
    out = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _base(source: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute module a (possibly relative) `from ... import` names."""
    if not level:
        return module or ""
    parts = source.split(".") if is_package else source.split(".")[:-1]
    parts = parts[: len(parts) - (level - 1)]
    return ".".join(parts + ([module] if module else []))


def imports_of(name: str, path: Path, known: set[str]) -> list[Import]:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    tree = ast.parse(text)
    is_package = path.name == "__init__.py"
    out: list[Import] = []

    def commented(lineno: int) -> bool:
        here = lines[lineno - 1]
        above = lines[lineno - 2].strip() if lineno >= 2 else ""
        return "#" in here or above.startswith("#")

    def visit(node, in_function: bool, type_only: bool):
        for child in ast.iter_child_nodes(node):
            fn = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            tc = type_only or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    out.append(Import(name, child.lineno, alias.name, (), fn, commented(child.lineno), tc))
            elif isinstance(child, ast.ImportFrom):
                base = _base(name, is_package, child.level, child.module)
                plain = [a.name for a in child.names if f"{base}.{a.name}" not in known]
                for alias in child.names:  # `from pkg import module` is an import of that module
                    if f"{base}.{alias.name}" in known:
                        out.append(Import(name, child.lineno, f"{base}.{alias.name}", (), fn,
                                          commented(child.lineno), tc))
                if plain or not child.names:
                    out.append(Import(name, child.lineno, base, tuple(plain), fn, commented(child.lineno), tc))
            visit(child, fn, tc)

    visit(tree, False, False)
    return out


def all_imports(root: Path = ROOT) -> list[Import]:
    mods = modules(root)
    return [i for name, path in mods.items() for i in imports_of(name, path, set(mods))]


def _owner(target: str, known: set[str]) -> str | None:
    """The package module that `target` is (or lives in: `mtrlib.data.X` for a name X)."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def graph(imports: list[Import], known: set[str]) -> dict[str, set[str]]:
    """Module -> modules it makes Python run. Importing `a.b.c` also runs `a.b`'s __init__,
    so that is an edge too (unless `a.b` is a package of the importer: already running)."""
    edges: dict[str, set[str]] = {m: set() for m in known}
    for i in imports:
        if i.type_only or not i.target.startswith(PACKAGE):
            continue
        target = _owner(i.target, known)
        if target is None or target == i.source:
            continue
        edges[i.source].add(target)
        parts = target.split(".")
        for k in range(1, len(parts)):
            pkg = ".".join(parts[:k])
            if pkg in known and pkg != i.source and not i.source.startswith(pkg + "."):
                edges[i.source].add(pkg)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def function_level_findings(imports: list[Import]) -> list[str]:
    out = []
    for i in imports:
        if not i.in_function:
            continue
        where = f"{i.source}:{i.line}"
        if i.commented:  # deferred on purpose, and says why (it still counts as an edge for cycles)
            continue
        if i.target.startswith(PACKAGE + ".") or i.target == PACKAGE:
            out.append(f"{where} imports {i.target} inside a function with no comment saying why it is deferred "
                       "(move it to the top, or say which heavy or optional dependency it defers)")
        else:
            out.append(f"{where} imports {i.target} inside a function with no comment saying why it is deferred")
    return out


def private_findings(imports: list[Import], known: set[str]) -> list[str]:
    """`from M import _x` where M is another module of the package. A private *module* of a
    package (weighting/_torchjd.py) may be imported by its own package's modules."""
    out = []
    for i in imports:
        if not i.target.startswith(PACKAGE):
            continue
        last = i.target.rpartition(".")[2]
        if i.target in known and last.startswith("_") and not last.startswith("__") and not i.names:
            home = i.target.rpartition(".")[0]
            if not (i.source == home or i.source.startswith(home + ".")):
                out.append(f"{i.source}:{i.line} imports the private module {i.target}")
            continue
        for n in i.names:
            if n.startswith("_") and not n.startswith("__"):
                out.append(f"{i.source}:{i.line} imports {n} from {i.target}")
    return out


def long_modules(root: Path = ROOT) -> list[str]:
    out = []
    for name, path in modules(root).items():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_LINES:
            out.append(f"{name}: {n} lines (at most {MAX_LINES})")
    return out


# -- the rules ----------------------------------------------------------------------------------------

def test_no_import_cycles():
    mods = modules()
    found = cycles(graph(all_imports(), set(mods)))
    assert not found, "import cycles (function-level imports count):\n" + "\n".join(" <-> ".join(c) for c in found)


def test_function_level_imports_only_defer_commented_dependencies():
    found = function_level_findings(all_imports())
    assert not found, f"{len(found)} function-level import(s):\n" + "\n".join(found)


def test_no_module_over_500_lines():
    found = long_modules()
    assert not found, "\n".join(found)


def users_outside() -> list[Import]:
    """Imports made by the app, its pages and the benchmarks (tests may reach into internals)."""
    known = set(modules())
    files = [ROOT / "app.py", *sorted((ROOT / "pages").rglob("*.py")), *sorted((ROOT / "bench").rglob("*.py"))]
    return [i for p in files if p.exists()
            for i in imports_of(".".join(p.relative_to(ROOT).with_suffix("").parts), p, known)]


def test_no_private_names_across_modules():
    mods = modules()
    found = private_findings(all_imports() + users_outside(), set(mods))
    assert not found, f"{len(found)} import(s) of private names:\n" + "\n".join(found)


# -- the checker itself, on a small package made for it ----------------------------------------------

def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")


def test_checker_finds_each_kind_of_problem(tmp_path):
    _write(tmp_path, {
        "mtrlib/__init__.py": "",
        "mtrlib/a/__init__.py": "from .x import thing\n",
        "mtrlib/a/x.py": "def thing():\n    from mtrlib.b import y\n    return y\n",
        "mtrlib/b/__init__.py": "",
        "mtrlib/b/y.py": "from ..a import x\n\n\ndef f():\n    import numpy\n\n\ndef g():\n"
                         "    # scipy is heavy and optional\n    import scipy\n",
        "mtrlib/b/z.py": "from mtrlib.a.x import _hidden\nfrom . import y as _y\n",
        "mtrlib/c.py": "from mtrlib.b import y\n" + "x = 1\n" * 600,
    })
    mods = modules(tmp_path)
    imps = [i for name, path in mods.items() for i in imports_of(name, path, set(mods))]
    found = cycles(graph(imps, set(mods)))
    assert found == [["mtrlib.a", "mtrlib.a.x", "mtrlib.b.y"]], found  # through mtrlib/a/__init__.py too
    fl = function_level_findings(imps)
    assert any("mtrlib.a.x:2 imports mtrlib.b.y" in f for f in fl), fl
    assert any("mtrlib.b.y:5 imports numpy" in f for f in fl), fl
    assert not any("scipy" in f for f in fl), fl
    assert len(fl) == 2, fl  # the commented scipy deferral is the only one allowed
    assert private_findings(imps, set(mods)) == ["mtrlib.b.z:1 imports _hidden from mtrlib.a.x"]
    assert long_modules(tmp_path) == ["mtrlib.c: 601 lines (at most 500)"]


def test_a_package_init_that_imports_back_is_a_cycle(tmp_path):
    """`import mtrlib.a.x` runs mtrlib/a/__init__.py first: a cycle through it is a cycle."""
    _write(tmp_path, {
        "mtrlib/__init__.py": "",
        "mtrlib/a/__init__.py": "from .x import thing\n",
        "mtrlib/a/x.py": "from mtrlib.b.y import other\n\nthing = 1\n",
        "mtrlib/b/__init__.py": "",
        "mtrlib/b/y.py": "from mtrlib.a.w import v\n\nother = 2\n",
        "mtrlib/a/w.py": "v = 3\n",
    })
    mods = modules(tmp_path)
    imps = [i for name, path in mods.items() for i in imports_of(name, path, set(mods))]
    assert cycles(graph(imps, set(mods))) == [["mtrlib.a", "mtrlib.a.x", "mtrlib.b.y"]]


def test_inspect_stays_torch_free(tmp_path):
    """`python -m mtrlib inspect` reads and checks data without paying torch's import: the data
    layer and the CLI's light verbs must not pull torch in at import time."""
    import subprocess
    import sys

    rows = ["user,item,rating,timestamp"] + [f"u{i % 17},m{(i * 7) % 31},{1 + i % 5},{1_600_000_000 + i}"
                                             for i in range(400)]
    (tmp_path / "ratings.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    code = ("import sys; from mtrlib.__main__ import main; rc = main(['inspect', sys.argv[1]]); "
            "print('RESULT', rc, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "ratings.csv")], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    last = [line for line in out.stdout.splitlines() if line.startswith("RESULT")]
    assert last == ["RESULT 0 False"], out.stdout[-2000:] + out.stderr[-2000:]
