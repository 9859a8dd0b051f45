"""Figure 4: Lambda cold start — importing the handler in a fresh interpreter — and the asset's size.

The reference is what any Python Lambda talking to PostgreSQL on AWS imports anyway: psycopg2 and
boto3. Each timed run is a fresh interpreter with bytecode caches in place (one untimed warm-up
writes them), so the figure measures imports, not compilation.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .common import PROJECT_ROOT, Context, Row, Run, Table, Target, Unit, median_wall, progress, repeat, run_process

HANDLER = "lambda_db_setup.handler"
PACKAGE_DIR = PROJECT_ROOT / "lambda_db_setup"
REFERENCE = "import psycopg2, boto3"
ASSET_LIMIT_BYTES = 10e6
TOP = 8
TOP_STDLIB = 4


def run(ctx: Context) -> list[Table]:
    progress("4. Cold start")
    table = Table("4. Cold start and Lambda asset")
    statements = {"reference": REFERENCE}
    handler_written = (PACKAGE_DIR / "handler.py").exists()
    if handler_written:
        statements["handler"] = f"import {HANDLER}"
    for statement in statements.values():  # warm-up: bytecode caches and the page cache
        run_process([sys.executable, "-c", statement], env={"PYTHONDONTWRITEBYTECODE": ""})
    runs = repeat({name: _importer(statement) for name, statement in statements.items()}, ctx.repeat)
    table.rows.append(
        Row(
            f"fresh interpreter: `import {HANDLER}`" + ("" if handler_written else " (handler.py not written yet)"),
            Unit.SECONDS,
            median_wall(runs.get("handler")),
            f"`{REFERENCE}`",
            median_wall(runs["reference"]),
            Target(1.5),
        )
    )
    asset = _newest_asset()
    table.rows.append(
        Row(
            f"Lambda asset, unzipped (`{asset.relative_to(PROJECT_ROOT)}`)"
            if asset
            else "Lambda asset, unzipped: not synthesized (no `cdk.out/asset.*` holding `lambda_db_setup/`)",
            Unit.BYTES,
            _size(asset) if asset else None,
            target=Target(ASSET_LIMIT_BYTES, on_ratio=False),
        )
    )
    if handler_written:
        loaded = _imported_by(f"import {HANDLER}")
        table.notes.append("Imported with the handler (`-X importtime`, self time): " + _describe(loaded) + ".")
        deferred = [f"`{name}` ({where})" for name, where in _deferred_imports() if name not in loaded]
        table.notes.append("Imported lazily, inside functions: " + (", ".join(deferred) or "nothing") + ".")
    if asset:
        biggest = sorted(asset.iterdir(), key=_size, reverse=True)[:TOP]
        table.notes.append(
            "Largest entries of the asset: "
            + ", ".join(f"`{entry.name}` {Unit.BYTES.format(_size(entry))}" for entry in biggest)
            + "."
        )
    return [table]


def _importer(statement: str) -> Callable[[], Run]:
    return lambda: run_process([sys.executable, "-c", statement])


def _imported_by(statement: str) -> dict[str, int]:
    """Modules a statement imports beyond interpreter start-up, with their self time in microseconds."""
    at_start = _importtime("pass")
    return {name: micros for name, micros in _importtime(statement).items() if name not in at_start}


def _importtime(statement: str) -> dict[str, int]:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement], capture_output=True, text=True, check=True
    )
    modules = {}
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        self_us, _, name = line.removeprefix("import time:").split("|")
        modules[name.strip()] = int(self_us)
    return modules


def _describe(modules: dict[str, int]) -> str:
    """Packages by total self time: third-party and project ones, then the standard library's biggest."""
    packages: dict[str, int] = {}
    stdlib: dict[str, int] = {}
    for name, micros in modules.items():
        top = name.split(".")[0]
        if importlib.util.find_spec(top) is None:
            continue  # an optional import that failed (`copy` tries `org.python.core`): nothing was loaded
        group = stdlib if top in sys.stdlib_module_names or top.startswith("_") else packages
        group[top] = group.get(top, 0) + micros
    biggest_stdlib = ", ".join(_ranked(stdlib)[:TOP_STDLIB])
    return (
        ", ".join(_ranked(packages)) + f"; standard library {sum(stdlib.values()) / 1000:.1f} ms ({biggest_stdlib}, …)"
    )


def _ranked(packages: dict[str, int]) -> list[str]:
    return [f"`{name}` {micros / 1000:.1f} ms" for name, micros in sorted(packages.items(), key=lambda item: -item[1])]


def _deferred_imports() -> list[tuple[str, str]]:
    """Imports written inside functions anywhere in the package, as (module, file:function)."""
    found = []
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        for function in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    found += [(alias.name, f"{path.name}:{function.name}") for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    where = f"{path.name}:{function.name}"
                    if node.module is None:  # from . import name
                        found += [(f"{PACKAGE_DIR.name}.{alias.name}", where) for alias in node.names]
                    else:
                        found.append((f"{PACKAGE_DIR.name}.{node.module}" if node.level else node.module, where))
    return found


def _newest_asset() -> Path | None:
    """The most recently synthesized asset directory that holds this project's package."""
    assets = [path for path in (PROJECT_ROOT / "cdk.out").glob("asset.*") if (path / PACKAGE_DIR.name).is_dir()]
    return max(assets, key=lambda path: path.stat().st_mtime, default=None)


def _size(path: Path) -> int:
    """Bytes of every file under ``path`` (symbolic links not followed), as it would be unzipped."""
    if not path.is_dir() or path.is_symlink():
        return path.lstat().st_size
    return sum((Path(root) / name).lstat().st_size for root, _, names in os.walk(path) for name in names)
