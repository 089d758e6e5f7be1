"""The house rules that a reader cannot see at a glance: imports point down the layers, and only
the application layer prints."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "reinforce_jax"

# Lower rank = lower layer. errors/config/system are plain values every layer may use.
RANK = {"errors": 0, "config": 0, "system": 0, "core": 1, "stats": 1, "networks": 2, "agent": 3, "envs": 4,
        "rollout": 5, "evaluate": 6, "learner": 7, "trainers": 8, "policies": 9, "app": 10,
        "__init__": 11, "__main__": 11}  # fmt: skip


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE), ast.parse(path.read_text())


def test_every_module_has_a_layer():
    assert {p.parts[0].removesuffix(".py") for p, _ in _modules()} <= set(RANK)


def test_imports_point_down():
    upward = []
    for path, tree in _modules():
        layer = path.parts[0].removesuffix(".py")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "reinforce_jax."
            ):
                dep = node.module.split(".")[1]
                if dep != layer and RANK[dep] > RANK[layer]:
                    upward.append(f"{path} imports {node.module}")
    assert not upward, upward


def test_only_the_application_layer_prints():
    printing = []
    for path, tree in _modules():
        if path.parts[0] == "app":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                printing.append(str(path))
    assert not printing, printing
