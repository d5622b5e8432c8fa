"""The shape every service shares (shared/ENGINEERING.md rule 1), measured from the source text:
no function longer than 60 lines, every SQL string of a service in a repository module, and every
service's own settings named `ORCHARD_<SERVICE>_…`.

Each check lists its offenders by name, so a failure says what to split or move. The allow-lists
below name what is known and being reshaped by other work, and only shrink: take an entry off once it
no longer offends (`python -m tests.contracts.test_shape` lists the ones that can go, also those
naming a module that is gone). They do not fail on such entries, so that work going on at the same
time in those areas is not held up by this file.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from chassis.settings import Settings
from contracts.registry import SERVICES

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ("chassis", "console", "services")
MAX_FUNCTION_LINES = 60

# Being reshaped by the order/voucher/delivery and console work (issue 20): to be shrunk to nothing.
LONG_FUNCTIONS_ALLOWED: frozenset[str] = frozenset()

# SQL outside a repository module, being moved by the order/voucher/delivery work (issue 20).
SQL_OUTSIDE_REPOSITORIES_ALLOWED: frozenset[str] = frozenset()

# Whose environment names predate the ORCHARD_<SERVICE>_ rule.
SETTINGS_PREFIX_ALLOWED: frozenset[str] = frozenset()

_SQL_START = re.compile(
    r"\s*(SELECT|INSERT\s+INTO|UPDATE\s+\S+\s+SET|DELETE\s+FROM|WITH\s|CREATE\s|ALTER\s|DROP\s|LOCK\s|TRUNCATE\s)",
    re.IGNORECASE,
)
_SQL_CLAUSE = re.compile(r"\b(FROM|INTO|SET|TABLE|VALUES|RETURNING|WHERE)\b", re.IGNORECASE)


def _modules() -> Iterator[Path]:
    for top in CHECKED:
        for path in sorted((ROOT / top).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if not {"tests", "migrations"} & set(relative.parts):
                yield relative


def _tree(relative: Path) -> ast.Module:
    return ast.parse((ROOT / relative).read_text(), filename=str(relative))


def _is_declarative_table(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A function that only returns one literal (a table of rows) is data, however long."""
    body = [statement for statement in function.body if not _is_docstring(statement)]
    return (
        len(body) == 1
        and isinstance(body[0], ast.Return)
        and isinstance(body[0].value, ast.Dict | ast.List | ast.Tuple | ast.Set)
    )


def _is_docstring(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)


def long_functions() -> dict[str, int]:
    """`path:function` of every function over MAX_FUNCTION_LINES lines, with its length."""
    found: dict[str, int] = {}
    for relative in _modules():
        for node in ast.walk(_tree(relative)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None:
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and not _is_declarative_table(node):
                    found[f"{relative.as_posix()}:{node.name}"] = length
    return found


def _literal_text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(part.value for part in node.values if isinstance(part, ast.Constant))
    return None


def _is_repository(relative: Path) -> bool:
    return (
        "repository" in relative.parts
        or relative.stem == "repository"
        or relative.stem.endswith("_repository")
    )


def sql_lines() -> dict[str, int]:
    """Lines of SQL string literals per service module (chassis and console have no SQL rule here:
    the chassis modules that hold SQL are themselves the shared stores, outbox, inbox and audit)."""
    found: dict[str, int] = {}
    for relative in _modules():
        if relative.parts[0] != "services":
            continue
        for node in ast.walk(_tree(relative)):
            text = _literal_text(node)
            if text and _SQL_START.match(text) and _SQL_CLAUSE.search(text) and node.end_lineno is not None:
                key = relative.as_posix()
                found[key] = found.get(key, 0) + node.end_lineno - node.lineno + 1
    return found


def sql_outside_repositories() -> dict[str, int]:
    return {path: lines for path, lines in sql_lines().items() if not _is_repository(Path(path))}


def test_no_function_is_longer_than_sixty_lines() -> None:
    offenders = {
        name: length for name, length in long_functions().items() if name not in LONG_FUNCTIONS_ALLOWED
    }

    assert offenders == {}, "split these functions (lines each)"


def test_every_sql_string_of_a_service_lives_in_a_repository_module() -> None:
    offenders = {
        path: lines
        for path, lines in sql_outside_repositories().items()
        if path not in SQL_OUTSIDE_REPOSITORIES_ALLOWED
    }

    assert offenders == {}, "move these SQL strings (lines per module) into the service's repository"


def no_longer_offending() -> list[str]:
    """Allow-list entries that can be taken off."""
    return sorted(LONG_FUNCTIONS_ALLOWED - set(long_functions())) + sorted(
        SQL_OUTSIDE_REPOSITORIES_ALLOWED - set(sql_outside_repositories())
    )


@pytest.mark.parametrize("service", sorted(set(SERVICES) - SETTINGS_PREFIX_ALLOWED))
def test_a_services_own_settings_are_named_with_its_prefix(service: str) -> None:
    module = importlib.import_module(f"services.{service}.settings")
    [settings] = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, Settings) and value is not Settings
    ]
    prefix = f"ORCHARD_{service.upper()}_"
    shared = set(Settings.model_fields)
    names = [field.alias for name, field in settings.model_fields.items() if name not in shared]

    assert [name for name in names if not (name or "").startswith(prefix)] == []


if __name__ == "__main__":
    print("\n".join(no_longer_offending()) or "every allow-listed entry still offends")
