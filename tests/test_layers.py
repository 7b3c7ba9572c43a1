"""Layers that point one way: the imports of every `gainrl_ops` module, read with `ast`
(module level and inside functions alike), form no cycle and never reach a higher domain."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gainrl_ops"
# Lowest first: a module may import its own domain and the ones before it. cli.py is the top.
DOMAINS = ("core", "data", "scoring", "curriculum", "training", "difficulty", "diagnostics", "store")
TOP = "gainrl_ops.cli"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> list[tuple[int, str]]:
    """(line, module) of each absolute import in the file; `from package import name` counts as
    `package.name` when that is a module, else as `package`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def graph() -> dict[str, list[tuple[int, str]]]:
    """Each gainrl_ops module's imports of gainrl_ops modules (and of `pipelines`)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    edges: dict[str, list[tuple[int, str]]] = {}
    for name, path in modules.items():
        targets = []
        for line, target in imported(path):
            if target.split(".")[0] == "pipelines":
                targets.append((line, target))
            elif target.startswith("gainrl_ops"):
                while target not in modules:  # `from module import function`
                    target = target.rsplit(".", 1)[0]
                if target != name:
                    targets.append((line, target))
        edges[name] = targets
    return edges


def domain(module: str) -> int | None:
    """Position of the module's domain in DOMAINS; None for the package itself."""
    parts = module.split(".")
    if len(parts) < 2 or parts[1] not in DOMAINS:
        return None
    return DOMAINS.index(parts[1])


def test_every_module_is_in_a_domain() -> None:
    outside = [m for m in graph() if domain(m) is None and m not in ("gainrl_ops", TOP)]
    assert outside == [], f"modules outside {DOMAINS}: add them to a domain or to the order"


def test_no_module_imports_a_higher_domain_or_the_pipelines() -> None:
    wrong = []
    for module, targets in graph().items():
        for line, target in targets:
            if target.split(".")[0] == "pipelines":
                wrong.append(f"{module} (line {line}) imports {target}: gainrl_ops never imports the Dagster code")
            elif target == TOP and module != TOP:
                wrong.append(f"{module} (line {line}) imports {target}, the command line on top of every domain")
            elif module != TOP and (mine := domain(module)) is not None and (theirs := domain(target)) is not None and theirs > mine:
                wrong.append(f"{module} (line {line}) imports {target}: {DOMAINS[theirs]} is above {DOMAINS[mine]}")
    assert wrong == [], "\n".join(wrong)


def test_no_import_cycle() -> None:
    edges = {module: sorted({target for _, target in targets if target.startswith("gainrl_ops")}) for module, targets in graph().items()}
    lines = {(module, target): line for module, targets in graph().items() for line, target in targets}
    cycles, state = [], dict.fromkeys(edges, "new")

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in edges[module]:
            if state[target] == "open":
                loop = path[path.index(target):] + [module, target] if target in path else [module, target]
                cycles.append(" -> ".join(f"{a} (line {lines[(a, b)]})" for a, b in zip(loop, loop[1:])) + f" -> {loop[-1]}")
            elif state[target] == "new":
                visit(target, [*path, module])
        state[module] = "done"

    for module in sorted(edges):
        if state[module] == "new":
            visit(module, [])
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)
