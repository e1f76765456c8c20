"""NATS stays behind bus/: no other module imports nats-py or reaches into a Bus's connection."""

from __future__ import annotations

import ast
from pathlib import Path

import agenttasks

SOURCE = Path(agenttasks.__file__).resolve().parent
BUS = SOURCE / "bus"


def _modules_outside_bus() -> list[Path]:
    return [p for p in sorted(SOURCE.rglob("*.py")) if BUS not in p.parents]


def _nats_imports(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "nats"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [node.module] if node.module.split(".")[0] == "nats" else []
    return found


def _connection_uses(tree: ast.AST) -> list[int]:
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in ("nc", "js")
    ]


def test_the_walk_sees_the_workers_relay_and_watchdog() -> None:
    names = {str(p.relative_to(SOURCE)) for p in _modules_outside_bus()}
    assert {"relay.py", "workers/runtime.py", "workers/watchdog.py"} <= names


def test_no_module_outside_bus_imports_nats() -> None:
    offenders = {
        str(path.relative_to(SOURCE)): imports
        for path in _modules_outside_bus()
        if (imports := _nats_imports(ast.parse(path.read_text(), str(path))))
    }
    assert offenders == {}


def test_no_module_outside_bus_touches_the_nats_connection() -> None:
    offenders = {
        name: lines
        for path in _modules_outside_bus()
        if (lines := _connection_uses(ast.parse(path.read_text(), str(path))))
        and (name := str(path.relative_to(SOURCE)))
    }
    assert offenders == {}


def test_the_detectors_find_what_they_look_for() -> None:
    tree = ast.parse("import nats\nfrom nats.js import api\nasync def f(bus):\n    bus.js.x()\n")
    assert _nats_imports(tree) == ["nats", "nats.js"]
    assert _connection_uses(tree) == [4]
