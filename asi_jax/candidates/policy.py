"""The static policy: what a candidate's source may contain, checked on the AST before it runs.

This is the first of two walls. It rejects, with the line and the construct, everything a
token mixer has no business doing: imports outside `ALLOWED_IMPORTS`, the builtins that reach
the interpreter or the file system (`open`, `exec`, `eval`, `__import__`, `getattr`, ...),
any dunder attribute (the usual way out of a restricted namespace), Python `while` loops
(unbounded; a mixer uses `jax.lax` loops), assignments into imported modules (patching the
checker's tools), and the attributes of allowed modules that do I/O or call back into Python
(`jnp.load`, `jax.profiler`, `pure_callback`, ...). What a static
check cannot see, the sandboxed worker's audit hook and resource limits stop at run time.
"""

from __future__ import annotations

import ast
import dataclasses

ALLOWED_IMPORTS = frozenset(
    {
        "jax",
        "jax.numpy",
        "jax.nn",
        "jax.lax",
        "flax.nnx",
        "einops",
        "math",
        "functools",
        "typing",
        "pallas_kernels",
    }
)
# `from flax import nnx` is the usual spelling of the allowed `flax.nnx`.
_ALLOWED_FROM = {"flax": {"nnx"}, "jax": {"numpy", "nn", "lax"}}

FORBIDDEN_NAMES = frozenset(
    {
        "open", "exec", "eval", "compile", "__import__", "globals", "locals", "vars",
        "getattr", "setattr", "delattr", "input", "breakpoint", "help", "memoryview",
        "exit", "quit", "__builtins__", "__loader__", "__spec__",
    }
)  # fmt: skip
# Attributes of allowed modules that read or write files, profile, or run Python callbacks.
FORBIDDEN_ATTRIBUTES = frozenset(
    {
        "load", "save", "savez", "savez_compressed", "fromfile", "tofile", "loadtxt",
        "savetxt", "genfromtxt", "memmap", "profiler", "io_callback", "pure_callback",
        "callback", "experimental", "distributed",
    }
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Violation:
    line: int
    construct: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.construct}: {self.message}"


class _Visitor(ast.NodeVisitor):
    def __init__(self):
        self.violations: list[Violation] = []
        self.module_names: set[str] = set()  # names bound by imports

    def _flag(self, node: ast.AST, construct: str, message: str) -> None:
        self.violations.append(Violation(getattr(node, "lineno", 0), construct, message))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.module_names.add((alias.asname or alias.name).split(".")[0])
            if alias.name not in ALLOWED_IMPORTS:
                self._flag(node, f"import {alias.name}", _import_message(alias.name))
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:
            self._flag(node, "relative import", "candidates are single files; import nothing local")
        for alias in node.names:
            self.module_names.add(alias.asname or alias.name)
            full = f"{module}.{alias.name}"
            allowed = (
                module in ALLOWED_IMPORTS
                or full in ALLOWED_IMPORTS
                or alias.name in _ALLOWED_FROM.get(module, ())
            )
            if alias.name == "*":
                self._flag(node, f"from {module} import *", "star imports hide what is used")
            elif not allowed:
                self._flag(node, f"from {module} import {alias.name}", _import_message(full))
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in FORBIDDEN_NAMES or _is_dunder(node.id):
            self._flag(node, node.id, "reaches the interpreter, its namespaces or files")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if _is_dunder(node.attr) and not _is_super_init(node):
            self._flag(node, f".{node.attr}", "dunder attributes are not allowed")
        elif node.attr in FORBIDDEN_ATTRIBUTES:
            self._flag(node, f".{node.attr}", "does file I/O, profiling or Python callbacks")
        self.generic_visit(node)

    def _check_targets(self, node: ast.AST, targets: list[ast.expr]) -> None:
        for target in targets:
            base = target
            while isinstance(base, (ast.Attribute, ast.Subscript)):
                base = base.value
            if (
                isinstance(target, (ast.Attribute, ast.Subscript))
                and isinstance(base, ast.Name)
                and base.id in self.module_names
            ):
                self._flag(node, f"assignment to {base.id}.*", "modules are not to be patched")

    def visit_Assign(self, node: ast.Assign) -> None:
        self._check_targets(node, node.targets)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._check_targets(node, [node.target])
        self.generic_visit(node)

    def visit_While(self, node: ast.While) -> None:
        self._flag(node, "while", "Python while loops are unbounded; use jax.lax loops")
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        self._flag(node, "global", "module state is not part of a mixer")
        self.generic_visit(node)


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__") and len(name) > 4


def _is_super_init(node: ast.Attribute) -> bool:
    """`super().__init__`: the one dunder a Module subclass may need."""
    value = node.value
    return (
        node.attr == "__init__"
        and isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id == "super"
    )


def _import_message(name: str) -> str:
    return f"{name} is not an allowed import; allowed: {', '.join(sorted(ALLOWED_IMPORTS))}"


def check_source(source: str) -> list[Violation]:
    """Every violation of the policy, in source order; [] when the source is acceptable.

    A syntax error is one violation naming its line. A source without `class Mixer` is one
    too: it cannot follow the contract.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return [Violation(e.lineno or 0, "syntax", e.msg)]
    visitor = _Visitor()
    visitor.visit(tree)
    has_mixer = any(isinstance(n, ast.ClassDef) and n.name == "Mixer" for n in tree.body)
    if not has_mixer:
        visitor.violations.append(
            Violation(1, "class Mixer", "the candidate must define `class Mixer(nnx.Module)`")
        )
    return sorted(visitor.violations, key=lambda v: v.line)
