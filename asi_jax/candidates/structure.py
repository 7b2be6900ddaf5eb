"""Structural fingerprints of candidate source, safe in the controller (`ast.parse` only,
nothing executed): two candidates that differ only in comments, docstrings, formatting,
annotations or the names they define get the same fingerprint, so a model that resubmits an
earlier design under new names is caught before it trains.

Kept: imports, the library names and attributes the code uses (`jnp.exp`, `x.shape`), keyword
argument names (they select library options) and every constant but docstrings. Renamed
canonically, in order of first appearance: functions, classes, arguments, variables and the
attributes the file assigns (`self.q = ...`). The traced program's fingerprint, which also
sees through refactorings, needs execution and is the task checker's (in the sandbox).
"""

from __future__ import annotations

import ast
import hashlib


def _defined(tree: ast.AST) -> tuple[set[str], set[str]]:
    """(names the file binds, attribute names it assigns)."""
    names: set[str] = set()
    attributes: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names.update(node.names)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, (ast.Store, ast.Del)):
            attributes.add(node.attr)
    return names, attributes


class _Normalise(ast.NodeTransformer):
    def __init__(self, names: set[str], attributes: set[str]):
        self.names, self.attributes = names, attributes
        self.canonical: dict[str, str] = {}

    def rename(self, name: str) -> str:
        return self.canonical.setdefault(name, f"n{len(self.canonical)}")

    def _body(self, node):
        body = [s for s in node.body if not _is_string(s)]
        node.body = body or [ast.Pass()]
        return node

    def visit_Module(self, node):
        return self.generic_visit(self._body(node))

    def visit_ClassDef(self, node):
        node.name = self.rename(node.name)
        return self.generic_visit(self._body(node))

    def visit_FunctionDef(self, node):
        node.name = self.rename(node.name)
        node.returns = None
        return self.generic_visit(self._body(node))

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Expr(self, node):
        return None if _is_string(node) else self.generic_visit(node)

    def visit_arg(self, node):
        node.arg, node.annotation, node.type_comment = self.rename(node.arg), None, None
        return node

    def visit_AnnAssign(self, node):
        self.generic_visit(node)
        if node.value is None:
            return None  # a bare annotation binds nothing
        return ast.Assign(targets=[node.target], value=node.value)

    def visit_Name(self, node):
        if node.id in self.names:
            node.id = self.rename(node.id)
        return node

    def visit_Attribute(self, node):
        self.generic_visit(node)
        if node.attr in self.attributes:
            node.attr = self.rename(node.attr)
        return node

    def visit_ExceptHandler(self, node):
        if node.name:
            node.name = self.rename(node.name)
        return self.generic_visit(node)

    def visit_Global(self, node):
        node.names = [self.rename(n) for n in node.names]
        return node

    visit_Nonlocal = visit_Global


def _is_string(statement: ast.stmt) -> bool:
    """A bare string statement: a docstring, or a comment written as one."""
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def ast_fingerprint(source: str) -> str:
    """A hash of `source`'s normalised syntax tree (see the module docstring); raises
    SyntaxError for source that does not parse."""
    tree = ast.parse(source)
    tree = _Normalise(*_defined(tree)).visit(tree)
    text = ast.dump(tree, annotate_fields=False, include_attributes=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
