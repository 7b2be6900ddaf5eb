"""The static policy: what a candidate's source may contain, checked on the AST before it runs.

This is the first of two walls; the sandboxed worker is the other. The candidate runs in the
process whose checker and trainer judge it, so besides files, processes and the interpreter's
internals the policy keeps it from changing anything it does not own: a patched `jnp.max`, a
patched cost analysis or a new pytree registration would fool the checks from inside. Each
rule is reported with its line and construct:

- Imports: only the task's `Contract` modules (what it lists as imports and the numeric
  submodules they expose); `from m import name` is checked as the attribute `m.name`.
- A module is never a value, only the left side of an attribute (`jnp.sum`): no alias,
  container, argument or default carries one where the rules cannot follow.
- Attribute chains from imported names are followed on the real objects, through modules,
  classes and namespaces only, never calling anything; a chain is refused where it reaches a
  module outside the allowed set (`typing.sys`, `jax.version.os`), module state (a dict, a
  list), a method through its class (it would run on any object as `self`), a name that does
  not exist, or goes on past a function or other object. A name assigned a chain is that
  object to the rules.
- The interpreter's builtins (`eval`, `getattr`, ...), dunders, private attributes and
  `FORBIDDEN_ATTRIBUTES` (files, callbacks, the compiler, process-wide state, frames) are
  refused on anything but the candidate's own instance: `self.load` is its own attribute.
- Only `__init__` and `__call__` own `self` (every other method can be called through its
  class with any object as `self`): only there are attributes set, as `self.x = ...`,
  `self.x[...] = ...`, or `self.x.y = ...` where `x` is only ever assigned a new instance.
  Items are set only there or in a list, dict or set the code built itself.
- Classes derive from flax.nnx classes or the candidate's own, and define no dunder method but
  `__init__` and `__call__`: a subclass of `jax.Array` or a custom `__eq__` could pass for what
  the checker expects.
- Annotations are types: imported names and chains, the candidate's classes, builtin types,
  aliases of types that hold no strings, and subscripts of these; a string in one is parsed and
  checked the same way. Flax evaluates a Module's annotations with `typing.get_type_hints`.
- No `while` (unbounded), `global`, generators, `async` or `match`; no `compiler_options=`,
  no `**` of a mapping whose keys it cannot read, no format string that looks up attributes.

What a static check cannot see, the sandboxed worker stops at run time.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import dataclasses
import functools
import importlib
import importlib.util
import inspect
import string
import sys
import types
from collections.abc import Iterable, Iterator, MutableMapping, MutableSequence, MutableSet


@dataclasses.dataclass(frozen=True)
class Contract:
    """What a task's candidates may import and reach, and the symbol they must define."""

    imports: frozenset[str]  # what a candidate may import (listed in messages and prompts)
    modules: frozenset[str]  # `imports` and the submodules they expose that it may reach
    symbol: str  # e.g. "Mixer"
    symbol_kind: str  # "class" or "function"
    described: str  # how messages name it: "`class Mixer(nnx.Module)`"

    def __post_init__(self):
        if not self.imports <= self.modules:
            raise ValueError("a contract's imports must be among its modules")
        if self.symbol_kind not in ("class", "function"):
            raise ValueError(f"symbol_kind is 'class' or 'function', got {self.symbol_kind!r}")

    @functools.cached_property
    def passages(self) -> frozenset[str]:
        """Packages that are only a way to an allowed module below them (`from flax import
        nnx`)."""
        return (
            frozenset(m.rsplit(".", i)[0] for m in self.modules for i in range(1, m.count(".") + 1))
            - self.modules
        )

    def reachable(self, module: str) -> bool:
        return module in self.modules or module in self.passages


FORBIDDEN_NAMES = frozenset(
    {
        "open", "exec", "eval", "compile", "__import__", "globals", "locals", "vars",
        "getattr", "setattr", "delattr", "input", "breakpoint", "help", "memoryview",
        "exit", "quit", "__builtins__", "__loader__", "__spec__",
        # type(obj) reaches a class's methods unbound; type(name, bases, dict) names dunders
        "type",
        # exceptions that pass the `except Exception` of the code that runs the candidate
        "BaseException", "SystemExit", "KeyboardInterrupt", "GeneratorExit",
    }
)  # fmt: skip
# nnx methods that set attributes named by a string: on `self` too, they could make an attribute
# that the rules take for an instance the candidate built hold a class shared with the checker.
_SET_BY_NAME = ("sow", "perturb", "set_attributes")
# Attributes a candidate never needs, refused on anything but its own instance (`self.load`), by
# what they do.
_FORBIDDEN_ATTRIBUTE_GROUPS = {
    "reads or writes files": (
        "load", "save", "savez", "savez_compressed", "fromfile", "tofile", "loadtxt",
        "savetxt", "genfromtxt", "memmap",
    ),
    "runs Python or native code when the compiled program runs": (
        "callback", "io_callback", "pure_callback", "debug_callback", "ffi", "ffi_call",
        "unsafe_buffer_pointer",
    ),
    "drives the compiler, whose options write files and whose reports the checker reads": (
        "lower", "compile", "compiler_ir", "cost_analysis", "memory_analysis", "as_text",
        "runtime_executable",
    ),
    "changes process-wide state (configuration, caches, printing, registries, primitives)": (
        "config", "debug", "experimental", "distributed", "profiler", "monitoring",
        "set_global", "set_local", "swap_local", "clear_caches", "clear_cache", "live_arrays",
        "live_buffers", "effects_barrier", "print_environment_info", "set_printoptions",
        "printoptions", "display", "tabulate", "capture", "default_registry",
        "register_pytree_node", "register_pytree_node_class", "register_pytree_with_keys",
        "register_pytree_with_keys_class", "register_dataclass", "register_static",
        "register_data_type", "register_variable_name", "def_impl", "def_abstract_eval",
        "def_effectful_abstract_eval", "def_custom_bind", "set_graph_mode",
        "set_graph_updates", "use_eager_sharding", "var_defaults", "update_context",
        "current_update_context", "split_context", "merge_context",
    ),
    "sets or gets attributes by a name held in a string, or evaluates strings": (
        "update_wrapper", "wraps", "singledispatch", "singledispatchmethod", "get_type_hints",
        "ForwardRef", *_SET_BY_NAME,
    ),
    "reaches frames or code objects, and through them every namespace in the process": (
        "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame",
        "ag_code", "ag_await", "f_back", "f_globals", "f_locals", "f_builtins", "f_code",
        "tb_frame", "tb_next", "mro",
    ),
}  # fmt: skip
_ATTRIBUTE_REASONS = {n: why for why, names in _FORBIDDEN_ATTRIBUTE_GROUPS.items() for n in names}
FORBIDDEN_ATTRIBUTES = frozenset(_ATTRIBUTE_REASONS)
# Redefine a function's derivatives for everyone who calls it: only on the candidate's own.
_MUTATORS = frozenset({"defjvp", "defjvps", "defvjp"})
_FORMATTERS = frozenset({"format", "format_map"})
_FORBIDDEN_KEYWORDS = frozenset({"compiler_options"})
_OWN_METHODS = ("__init__", "__call__")
_MUTABLE = (dict, list, set, bytearray, MutableMapping, MutableSequence, MutableSet)
# Reached through a class, these run on whatever object is passed as `self`.
_INSTANCE_MEMBERS = (
    types.FunctionType, property, types.MethodDescriptorType, types.WrapperDescriptorType,
    types.GetSetDescriptorType, types.MemberDescriptorType,
)  # fmt: skip
_SCOPES = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_FRESH = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)


@dataclasses.dataclass(frozen=True)
class Violation:
    line: int
    construct: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.construct}: {self.message}"


# ------------------------------------------------------------------------------------------
# Following attribute chains on the real objects.


@dataclasses.dataclass(frozen=True, eq=False)
class _Ref:
    """A real object that a name or chain denotes, and the way the source spelled it."""

    obj: object
    path: str


class _Refused(Exception):
    pass


def _reach(name: str) -> str:
    return f"reaches module {name}, which candidates may not use"


@functools.cache
def _submodule(module: types.ModuleType, attr: str) -> str | None:
    """`module.attr` when that names a module: the worker may have imported it since."""
    name = f"{module.__name__}.{attr}"
    if name in sys.modules:
        return name
    if "__path__" not in vars(module):
        return None
    try:
        return name if importlib.util.find_spec(name) is not None else None
    except (ImportError, ValueError):
        return None


def _module_ref(name: str) -> _Ref:
    """Imports only what a contract's modules and passages name: numeric libraries whose
    import initialises no JAX backend (the controller leaves those to the workers)."""
    return _Ref(importlib.import_module(name), name)


def _step(ref: _Ref, attr: str, contract: Contract) -> _Ref:
    """`ref.attr`, read from `__dict__`s without running any code; raises `_Refused`."""
    obj, path = ref.obj, f"{ref.path}.{attr}"
    if isinstance(obj, types.ModuleType):
        sub = _submodule(obj, attr)
        if sub is not None:
            if not contract.reachable(sub):
                raise _Refused(_reach(sub))
            return _Ref(importlib.import_module(sub), path)
        if attr not in vars(obj):
            raise _Refused(f"{obj.__name__} has no attribute {attr!r}")
        value = vars(obj)[attr]
        if obj.__name__ in contract.passages and not isinstance(value, types.ModuleType):
            raise _Refused(f"{obj.__name__} is only the way to its allowed submodules")
    elif isinstance(obj, type):
        try:
            value = inspect.getattr_static(obj, attr)
        except AttributeError:
            raise _Refused(f"{ref.path} has no attribute {attr!r}") from None
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        elif isinstance(value, _INSTANCE_MEMBERS):
            raise _Refused(f"a method of {ref.path}: reached through its class it runs on any "
                           "object as self; call it on an instance")  # fmt: skip
    elif isinstance(obj, types.SimpleNamespace):
        if attr not in vars(obj):
            raise _Refused(f"{ref.path} has no attribute {attr!r}")
        value = vars(obj)[attr]
    else:
        raise _Refused(f"{ref.path} is a {type(obj).__name__}: use it, not its attributes")
    if isinstance(value, types.ModuleType) and not contract.reachable(value.__name__):
        raise _Refused(_reach(value.__name__))
    if isinstance(value, _MUTABLE):
        raise _Refused(f"is module state (a {type(value).__name__}); candidates do not touch it")
    return _Ref(value, path)


def _is_module(ref: _Ref) -> bool:
    return isinstance(ref.obj, types.ModuleType)


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__") and len(name) > 4


def _import_message(name: str, contract: Contract) -> str:
    return f"{name} is not an allowed import; allowed: {', '.join(sorted(contract.imports))}"


def _text(node: ast.AST, limit: int = 60) -> str:
    text = ast.unparse(node)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _chain(node: ast.expr) -> tuple[ast.expr, list[str | None]]:
    """The root of `a.b[i].c` and its steps from the root out: names, None for an item."""
    steps: list[str | None] = []
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        steps.append(node.attr if isinstance(node, ast.Attribute) else None)
        node = node.value
    return node, steps[::-1]


def _targets(node: ast.AST) -> Iterator[ast.expr]:
    """What a statement binds or sets, tuples unpacked."""
    if isinstance(node, ast.Assign):
        found = list(node.targets)
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For, ast.AsyncFor, ast.NamedExpr,
                           ast.comprehension)):  # fmt: skip
        found = [node.target]
    elif isinstance(node, ast.Delete):
        found = list(node.targets)
    elif isinstance(node, (ast.With, ast.AsyncWith)):
        found = [item.optional_vars for item in node.items if item.optional_vars]
    else:
        found = []
    while found:
        target = found.pop()
        if isinstance(target, (ast.Tuple, ast.List)):
            found.extend(target.elts)
        elif isinstance(target, ast.Starred):
            found.append(target.value)
        else:
            yield target


def _pairs(target: ast.expr, value: ast.expr | None) -> Iterator[tuple[ast.expr, ast.expr | None]]:
    """(target, value) for an assignment, element by element where both are displays."""
    if isinstance(target, (ast.Tuple, ast.List)):
        displays = isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts)
        for i, element in enumerate(target.elts):
            yield from _pairs(element, value.elts[i] if displays else None)
    elif isinstance(target, ast.Starred):
        yield from _pairs(target.value, None)
    else:
        yield target, value


def _assignments(nodes: Iterable[ast.AST]) -> Iterator[tuple[ast.expr, ast.expr | None]]:
    """Every (target, value) binding of `nodes`; None where the value is not one expression."""
    for node in nodes:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                yield from _pairs(target, node.value)
        elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
            yield from _pairs(node.target, node.value)
        elif isinstance(node, (ast.For, ast.comprehension)) and isinstance(
            node.iter, (ast.Tuple, ast.List, ast.Set)
        ):
            for element in node.iter.elts:
                yield from _pairs(node.target, element)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            positional = a.posonlyargs + a.args
            for arg, default in zip(
                positional[len(positional) - len(a.defaults) :], a.defaults, strict=True
            ):
                yield ast.Name(arg.arg, ast.Store()), default
            for arg, default in zip(a.kwonlyargs, a.kw_defaults, strict=True):
                if default is not None:
                    yield ast.Name(arg.arg, ast.Store()), default
        else:
            for target in _targets(node):
                yield target, None


def _bound_names(nodes: Iterable[ast.AST]) -> Iterator[str]:
    """Every name that `nodes` bind, parameters and definitions included."""
    for node in nodes:
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            yield node.id
        elif isinstance(node, ast.arg):
            yield node.arg
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name
        elif isinstance(node, ast.alias):
            yield (node.asname or node.name).split(".")[0]
        elif isinstance(node, ast.ExceptHandler) and node.name:
            yield node.name
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            yield from node.names


def _refused_statement(construct: str, message: str):
    """A visitor method that refuses every node of its kind."""

    def visit(self: _Checker, node: ast.AST) -> None:
        self.flag(node, construct, message)
        self.generic_visit(node)

    return visit


def _format_fields(text: str) -> list[str]:
    """The replacement fields of a format string, those inside format specs included."""
    fields = []
    for _, field, spec, _ in string.Formatter().parse(text):
        fields += [field] if field else []
        fields += _format_fields(spec) if spec else []
    return fields


# ------------------------------------------------------------------------------------------
# The checker.


class _Checker(ast.NodeVisitor):
    def __init__(self, tree: ast.Module, contract: Contract):
        self.tree, self.contract = tree, contract
        self.violations: list[Violation] = []
        self.nodes = list(ast.walk(tree))
        self.parents: dict[ast.AST, ast.AST] = {}
        self._note_parents(self.nodes)
        self.assignments = list(_assignments(self.nodes))
        counts: dict[str, int] = {}
        for name in _bound_names(self.nodes):
            counts[name] = counts.get(name, 0) + 1
        self.bound = set(counts)  # what the candidate binds; any other name is a builtin
        self.env: dict[str, list[_Ref]] = {}
        self._bind_names()
        self.pure = self._pure_names()
        defs = [n for n in self.nodes if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        # Bound once, by their own definition, with no decorator of the candidate's that could
        # put something else in their place: its classes and functions.
        own = [n.name for n in defs if counts[n.name] == 1
               and all(self._inert(d) for d in n.decorator_list)]  # fmt: skip
        self.own_classes = {n.name for n in defs if isinstance(n, ast.ClassDef)} & set(own)
        self.own_functions = {n.name for n in defs if isinstance(n, ast.FunctionDef)} & set(own)
        self.aliases = self._type_aliases()
        self.own_of = {id(n): own for n in defs if (own := self._own_parameter(n)) is not None}
        self.owned = self._owned_attributes()
        self._fresh: dict[int, set[str]] = {}

    def _note_parents(self, nodes: Iterable[ast.AST]) -> None:
        for node in nodes:
            for child in ast.iter_child_nodes(node):
                self.parents[child] = node

    def flag(self, node: ast.AST, construct: str, message: str) -> None:
        self.violations.append(Violation(getattr(node, "lineno", 0), construct, message))

    # -- what names and chains denote ------------------------------------------------------

    def refs(self, node: ast.AST) -> list[_Ref]:
        """The real objects `node` may denote, where the rules can follow it."""
        if isinstance(node, ast.Name):
            return self.env.get(node.id, [])
        if isinstance(node, ast.Attribute):
            found = []
            for ref in self.refs(node.value):
                with contextlib.suppress(_Refused):
                    found.append(_step(ref, node.attr, self.contract))
            return found
        if isinstance(node, ast.IfExp):
            return self.refs(node.body) + self.refs(node.orelse)
        if isinstance(node, ast.BoolOp):
            return [r for value in node.values for r in self.refs(value)]
        if isinstance(node, ast.NamedExpr):
            return self.refs(node.value)
        if isinstance(node, ast.Subscript) and isinstance(node.value, (ast.Tuple, ast.List)):
            return [r for element in node.value.elts for r in self.refs(element)]
        return []

    def _import_refs(self, node: ast.Import | ast.ImportFrom) -> Iterator[tuple[str, _Ref]]:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in self.contract.modules:
                    bound = alias.name if alias.asname else alias.name.split(".")[0]
                    yield alias.asname or bound, _module_ref(bound)
        elif not node.level and self.contract.reachable(node.module):
            for alias in node.names:
                with contextlib.suppress(_Refused):
                    yield alias.asname or alias.name, _step(_module_ref(node.module), alias.name,
                                                            self.contract)  # fmt: skip

    def _bind_names(self) -> None:
        """Imports, then aliases of what they bind, until nothing new is found."""
        for node in self.nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for name, ref in self._import_refs(node):
                    self.env.setdefault(name, []).append(ref)
        bindings = [(t.id, v) for t, v in self.assignments
                    if isinstance(t, ast.Name) and v is not None]  # fmt: skip
        for _ in range(8):  # aliases of aliases; a hostile chain of them only gets stricter
            changed = False
            for name, value in bindings:
                known = self.env.setdefault(name, [])
                for ref in self.refs(value):
                    if all(ref.obj is not k.obj for k in known):
                        known.append(ref)
                        changed = True
            if not changed:
                break

    def _pure_names(self) -> set[str]:
        """Names bound only by imports and by assignments of what the rules follow: the only
        names whose meaning a permission may rest on (`deco = jax.jit` bound nowhere else)."""
        values: dict[int, list[ast.expr | None]] = {}
        for target, value in self.assignments:
            if isinstance(target, ast.Name):
                values.setdefault(id(target), []).append(value)
        others = (n for n in self.nodes if not isinstance(n, (ast.alias, ast.Name)))
        impure = set(_bound_names(others))
        for node in self.nodes:
            if not isinstance(node, ast.Name) or isinstance(node.ctx, ast.Load):
                continue
            bound_to = values.get(id(node), [None])
            if not all(v is not None and self.refs(v) for v in bound_to):
                impure.add(node.id)
        return self.bound - impure

    def _type_aliases(self) -> set[str]:
        """Names bound only to type expressions that hold no string for typing to evaluate:
        `Shape = tuple[int, ...]` may name a type in an annotation."""
        values: dict[str, list[ast.expr | None]] = {}
        for target, value in self.assignments:
            if isinstance(target, ast.Name):
                values.setdefault(target.id, []).append(value)
        others = (n for n in self.nodes if not isinstance(n, ast.Name))
        candidates = set(values) - set(_bound_names(others))
        aliases: set[str] = set()
        for _ in range(8):  # aliases of aliases
            found = {
                name for name in candidates
                if all(v is not None and self._type_expression(v, aliases) for v in values[name])
            }  # fmt: skip
            if found == aliases:
                break
            aliases = found
        return aliases

    def _type_expression(self, node: ast.expr, aliases: set[str], literal: bool = False) -> bool:
        import typing

        if isinstance(node, ast.Name):
            builtin_type = isinstance(vars(builtins).get(node.id), type)
            return node.id in self.pure | self.own_classes | aliases or (
                builtin_type and node.id not in self.bound
            )
        if isinstance(node, ast.Attribute):  # not of the candidate's classes: `C.x = "code"`
            return self._pure_chain(node)
        if isinstance(node, ast.Subscript):
            literal = any(r.obj is typing.Literal for r in self.refs(node.value))
            return self._type_expression(node.value, aliases) and self._type_expression(
                node.slice, aliases, literal
            )
        if isinstance(node, (ast.Tuple, ast.List)):
            return all(self._type_expression(e, aliases, literal) for e in node.elts)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return self._type_expression(node.left, aliases) and self._type_expression(
                node.right, aliases
            )
        return isinstance(node, ast.Constant) and (literal or not isinstance(node.value, str))

    def _pure_chain(self, node: ast.expr) -> bool:
        """A chain that denotes only what the rules follow: `jax.jit`, `nnx.Linear`."""
        while isinstance(node, ast.Attribute):
            node = node.value
        return isinstance(node, ast.Name) and node.id in self.pure and bool(self.refs(node))

    # -- who owns what ---------------------------------------------------------------------

    def _own_parameter(self, node: ast.FunctionDef | ast.ClassDef) -> str | None:
        """`self` of an `__init__` or `__call__`: the one parameter that is surely the instance.
        Any other method can be reached through its class and called with any object."""
        if not (isinstance(node, ast.FunctionDef) and node.name in _OWN_METHODS
                and isinstance(self.parents.get(node), ast.ClassDef)):  # fmt: skip
            return None
        a = node.args
        positional = a.posonlyargs + a.args
        if not positional or not all(self._inert(d) for d in node.decorator_list):
            return None
        own = positional[0].arg
        others = [*positional[1:], *a.kwonlyargs, a.vararg, a.kwarg]
        rebound = {*_bound_names(n for stmt in node.body for n in ast.walk(stmt))}
        return None if own in rebound | {o.arg for o in others if o} else own

    def _inert(self, decorator: ast.expr) -> bool:
        """An imported decorator, or a call of one with constant arguments: nothing of the
        candidate's that could call the method with another object as `self`."""
        if isinstance(decorator, ast.Call):
            args = [*decorator.args, *(k.value for k in decorator.keywords)]
            return self._inert(decorator.func) and all(self._constant(a) for a in args)
        return self._pure_chain(decorator)

    def _constant(self, node: ast.expr) -> bool:
        if isinstance(node, (ast.Tuple, ast.List)):
            return all(self._constant(e) for e in node.elts)
        return isinstance(node, ast.Constant) or self._pure_chain(node)

    def own_root(self, node: ast.AST) -> str | None:
        """The name of the instance in the body of the `__init__` or `__call__` around `node`
        (its defaults and decorators run outside, where that name is something else)."""
        while node in self.parents:
            node, child = self.parents[node], node
            if id(node) in self.own_of:
                return self.own_of[id(node)] if child in node.body else None
        return None

    def _constructed(self, value: ast.expr | None) -> bool:
        """A call of a flax.nnx class or one of the candidate's: a new instance of its own."""
        if not isinstance(value, ast.Call):
            return False
        if isinstance(value.func, ast.Name) and value.func.id in self.own_classes:
            return True
        return self._pure_chain(value.func) and all(
            isinstance(r.obj, type) and r.obj.__module__.startswith("flax.nnx.")
            for r in self.refs(value.func)
        )

    def _owned_attributes(self) -> set[str]:
        """Attributes of `self` only ever assigned a new instance: `self.x.y = v` then sets an
        attribute of that instance, never one of a class shared with the checker."""
        values: dict[str, list[ast.expr | None]] = {}
        for target, value in self.assignments:
            if (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                    and target.value.id == self.own_root(target)):  # fmt: skip
                values.setdefault(target.attr, []).append(value)
        return {a for a, vs in values.items() if all(self._constructed(v) for v in vs)}

    def _fresh_names(self, scope: ast.AST) -> set[str]:
        """Names that `scope` binds only to a list, dict or set it builds itself."""
        if id(scope) not in self._fresh:
            values: dict[str, list[ast.expr | None]] = {}
            for target, value in self.assignments:
                if isinstance(target, ast.Name) and self._scope_of(target) is scope:
                    values.setdefault(target.id, []).append(value)
            if isinstance(scope, (ast.FunctionDef, ast.Lambda)):
                for arg in ast.walk(scope.args):
                    if isinstance(arg, ast.arg):
                        values.setdefault(arg.arg, []).append(None)
            declared = {name for n in self.nodes if isinstance(n, (ast.Global,
                        ast.Nonlocal)) for name in n.names}  # fmt: skip
            self._fresh[id(scope)] = {
                name for name, vs in values.items() if name not in declared and all(
                    isinstance(v, _FRESH) or (isinstance(v, ast.Call) and isinstance(
                        v.func, ast.Name) and v.func.id in {"list", "dict", "set"} - self.bound)
                    for v in vs)
            }  # fmt: skip
        return self._fresh[id(scope)]

    def _scope_of(self, node: ast.AST) -> ast.AST:
        node = self.parents.get(node, node)
        while not isinstance(node, _SCOPES) and node in self.parents:
            node = self.parents[node]
        return node

    def _is_fresh(self, name: ast.Name) -> bool:
        scope: ast.AST | None = self._scope_of(name)
        while scope is not None:
            bound = {t.id for t, _ in self.assignments if isinstance(t, ast.Name)
                     and self._scope_of(t) is scope}  # fmt: skip
            if isinstance(scope, (ast.FunctionDef, ast.Lambda)):
                bound |= {a.arg for a in ast.walk(scope.args) if isinstance(a, ast.arg)}
            if name.id in bound:
                return name.id in self._fresh_names(scope)
            scope = self._scope_of(scope) if scope in self.parents else None
        return False

    # -- names and attributes --------------------------------------------------------------

    def _is_base(self, node: ast.AST) -> bool:
        parent = self.parents.get(node)
        return isinstance(parent, ast.Attribute) and parent.value is node

    def _bare_module(self, node: ast.Name | ast.Attribute) -> None:
        if isinstance(node.ctx, ast.Load) and not self._is_base(node):
            modules = [r for r in self.refs(node) if _is_module(r)]
            if modules:
                self.flag(node, _text(node), f"is the module {modules[0].obj.__name__}: use it "
                          f"as {_text(node)}.<name>, never as a value")  # fmt: skip

    def _attribute_problem(self, node: ast.Attribute) -> str | None:
        attr, value = node.attr, node.value
        own = isinstance(value, ast.Name) and value.id == self.own_root(node)
        if _is_dunder(attr):
            super_call = (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                          and value.func.id == "super" and "super" not in self.bound)  # fmt: skip
            if not (super_call and attr in _OWN_METHODS):
                return "dunder attributes are not allowed"
        elif attr.startswith("_") and not own:
            return "private attributes are the candidate's own: self._x in __init__ or __call__"
        elif attr in FORBIDDEN_ATTRIBUTES and not (own and attr not in _SET_BY_NAME):
            return f"{_ATTRIBUTE_REASONS[attr]}; a candidate has no need of it"
        elif attr in _MUTATORS and not (isinstance(value, ast.Name)
                                        and value.id in self.own_functions):  # fmt: skip
            return "redefines a function's derivatives; only for functions defined here"
        elif attr in _FORMATTERS and not own:
            text = value.value if isinstance(value, ast.Constant) else None
            try:
                plain = isinstance(text, str) and not any(
                    "." in f or "[" in f for f in _format_fields(text)
                )
            except ValueError:
                plain = False
            if not plain:
                return "format strings look up attributes and items by name; use an f-string"
        return None

    def visit_Name(self, node: ast.Name) -> None:
        name, load = node.id, isinstance(node.ctx, ast.Load)
        module_level = isinstance(self._scope_of(node), ast.Module)
        harmless = (name in ("__name__", "__doc__") and load) or (
            name == "__all__" and module_level
        )
        if name in FORBIDDEN_NAMES or (_is_dunder(name) and not harmless):
            self.flag(node, name, "reaches the interpreter, its namespaces or files")
        self._bare_module(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        problem = self._attribute_problem(node)
        if problem:
            self.flag(node, f".{node.attr}", problem)
        else:
            for ref in self.refs(node.value):
                try:
                    _step(ref, node.attr, self.contract)
                except _Refused as e:
                    self.flag(node, _text(node), str(e))
                    break
            self._bare_module(node)
        self.generic_visit(node)

    # -- imports ---------------------------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name not in self.contract.modules:
                self.flag(node, f"import {alias.name}",
                          _import_message(alias.name, self.contract))  # fmt: skip

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level:
            self.flag(node, "relative import", "candidates are single files; import nothing local")
            return
        for alias in node.names:
            construct = f"from {module} import {alias.name}"
            if module == "__future__":
                if alias.name != "annotations":
                    self.flag(node, construct, "only `from __future__ import annotations`")
            elif alias.name == "*":
                self.flag(node, f"from {module} import *", "star imports hide what is used")
            elif not self.contract.reachable(module):
                self.flag(node, construct,
                          _import_message(f"{module}.{alias.name}", self.contract))  # fmt: skip
            else:
                problem = self._attribute_problem(ast.Attribute(ast.Constant(0), alias.name))
                if problem is None:
                    try:
                        _step(_module_ref(module), alias.name, self.contract)
                    except _Refused as e:
                        problem = str(e)
                if problem:
                    self.flag(node, construct, problem)

    # -- assignments -----------------------------------------------------------------------

    def _target_problem(self, target: ast.Attribute | ast.Subscript) -> str | None:
        root, steps = _chain(target)
        if isinstance(root, ast.Name) and root.id == self.own_root(target) and steps[0]:
            if isinstance(target, ast.Subscript) or len(steps) == 1:
                return None
            if len(steps) == 2 and steps[1] and steps[0] in self.owned:
                return None
            return (f"only self.x = ..., self.x[...] = ... and, where x is only ever assigned "
                    f"a new instance, self.x.y = ... (set {_text(target)} in its own class's "
                    "__init__, or through [...])")  # fmt: skip
        if isinstance(root, ast.Name) and self.refs(root):
            return None  # `_assignment` names the module
        if (isinstance(target, ast.Subscript) and isinstance(root, ast.Name)
                and not any(steps) and self._is_fresh(root)):  # fmt: skip
            return None
        if isinstance(target, ast.Subscript):
            return ("items are set only in self's attributes in __init__ and __call__, or in a "
                    "list, dict or set built here")  # fmt: skip
        return ("attributes are set only on self, in __init__ and __call__: any other method can "
                "be called through its class with any object as self")  # fmt: skip

    def _assignment(self, node: ast.AST) -> None:
        for target in _targets(node):
            if not isinstance(target, (ast.Attribute, ast.Subscript)):
                continue
            root, _ = _chain(target)
            refs = self.refs(root) if isinstance(root, ast.Name) else []
            if refs:
                self.flag(node, f"assignment to {root.id}.*",
                          f"{root.id} is {refs[0].path}, from an imported module: modules and "
                          "what they hold are not to be patched")  # fmt: skip
            elif problem := self._target_problem(target):
                self.flag(node, f"assignment to {_text(target)}", problem)

    def visit_Assign(self, node: ast.Assign) -> None:
        self._assignment(node)
        self.generic_visit(node)

    visit_AugAssign = visit_Delete = visit_For = visit_With = visit_comprehension = visit_Assign

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._assignment(node)
        self._annotation(node.annotation)
        self.generic_visit(node)

    # -- definitions -----------------------------------------------------------------------

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        import typing

        for base in node.bases:
            expr = base.value if isinstance(base, ast.Subscript) else base
            refs = self.refs(expr)
            own = isinstance(expr, ast.Name) and expr.id in self.own_classes | (
                {"object"} - self.bound
            )
            library = self._pure_chain(expr) and all(
                r.obj in (typing.Generic, typing.Protocol, typing.NamedTuple)
                or (isinstance(r.obj, type) and r.obj.__module__.startswith("flax.nnx."))
                for r in refs
            )
            if not (own or library):
                self.flag(base, f"class {node.name}({_text(base)})",
                          "a candidate's classes derive from flax.nnx classes or its own: a "
                          "subclass of an array or a builtin could pass for what the checker "
                          "expects")  # fmt: skip
        for keyword in node.keywords:
            if keyword.arg == "metaclass" or not isinstance(keyword.value, ast.Constant):
                self.flag(node, f"class {node.name}({keyword.arg}=...)",
                          "class keywords are constants, and no metaclass")  # fmt: skip
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                _is_dunder(item.name) and item.name not in _OWN_METHODS
            ):
                self.flag(item, f"def {item.name}",
                          "the only dunder methods are __init__ and __call__: others change how "
                          "the checker's own operations treat the candidate's objects")  # fmt: skip
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if node.name in _OWN_METHODS and isinstance(self.parents.get(node), ast.ClassDef):
            for decorator in node.decorator_list:
                if not self._inert(decorator):
                    self.flag(decorator, f"@{_text(decorator)}",
                              "decorators of __init__ and __call__ are imported ones, with "
                              "constant arguments: another could call them with an object "
                              "that is not the instance")  # fmt: skip
        for arg in ast.walk(node.args):
            if isinstance(arg, ast.arg) and arg.annotation is not None:
                self._annotation(arg.annotation)
        if node.returns is not None:
            self._annotation(node.returns)
        self.generic_visit(node)

    def _annotation(self, node: ast.expr, literal: bool = False) -> None:
        """Annotations are types. Flax evaluates a Module's annotations in its own module
        (strings included, and all of them after `from __future__ import annotations`), so
        they hold no calls, and no name that could carry a string for typing to evaluate."""
        import typing

        if isinstance(node, ast.Constant):
            if isinstance(node.value, str) and not literal:
                try:
                    parsed = ast.parse(node.value, mode="eval").body
                except SyntaxError:
                    self.flag(node, f"annotation {node.value!r}",
                              "a string annotation is a type expression")  # fmt: skip
                    return
                for inner in ast.walk(parsed):
                    inner.lineno = node.lineno  # type: ignore[attr-defined]
                self.parents[parsed] = node
                self._note_parents(ast.walk(parsed))
                self._annotation(parsed)
                self.visit(parsed)
        elif isinstance(node, ast.Name):
            if not self._type_expression(node, self.aliases):
                self.flag(node, f"annotation {node.id}",
                          "annotations name imported types, classes defined here, builtin types "
                          "or aliases of types without strings: another name could carry a "
                          "string that typing evaluates")  # fmt: skip
        elif isinstance(node, ast.Attribute):
            if not self._pure_chain(node):
                self.flag(node, f"annotation {_text(node)}",
                          "attributes in annotations are of imported modules: one of the "
                          "candidate's could hold a string that typing evaluates")  # fmt: skip
        elif isinstance(node, ast.Subscript):
            self._annotation(node.value)
            is_literal = any(r.obj is typing.Literal for r in self.refs(node.value))
            self._annotation(node.slice, literal=is_literal)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for element in node.elts:
                self._annotation(element, literal)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            self._annotation(node.left)
            self._annotation(node.right)
        else:
            self.flag(node, f"annotation {_text(node)}",
                      "annotations are types: names, attributes and subscripts")  # fmt: skip

    # -- calls and statements --------------------------------------------------------------

    def visit_Call(self, node: ast.Call) -> None:
        for keyword in node.keywords:
            if keyword.arg in _FORBIDDEN_KEYWORDS:
                self.flag(keyword, f"{keyword.arg}=",
                          "compiler options write files (xla_dump_to) and change what the "
                          "checker measures")  # fmt: skip
            elif keyword.arg is None:
                keys = keyword.value.keys if isinstance(keyword.value, ast.Dict) else [None]
                readable = [k.value for k in keys if isinstance(k, ast.Constant)
                            and isinstance(k.value, str)]  # fmt: skip
                if len(readable) != len(keys) or _FORBIDDEN_KEYWORDS & set(readable):
                    self.flag(keyword, "**",
                              "pass keywords by name: the policy cannot read the keys of "
                              f"**{_text(keyword.value)}")  # fmt: skip
        if isinstance(node.func, ast.Name) and node.func.id == "super" and node.args:
            own = self.own_root(node)
            if not (len(node.args) == 2 and isinstance(node.args[0], ast.Name)
                    and node.args[0].id in self.own_classes and isinstance(node.args[1], ast.Name)
                    and node.args[1].id == own):  # fmt: skip
                self.flag(node, _text(node), "use super() without arguments")
        self.generic_visit(node)

    def visit_While(self, node: ast.While) -> None:
        self.flag(node, "while", "Python while loops are unbounded; use jax.lax loops")
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        self.flag(node, "global", "module state is not part of a candidate")

    visit_Yield = visit_YieldFrom = _refused_statement(
        "yield", "a candidate is no generator (a suspended one keeps its `with` blocks open)"
    )
    visit_AsyncFunctionDef = visit_AsyncFor = visit_AsyncWith = visit_Await = _refused_statement(
        "async", "a candidate runs no coroutines"
    )
    visit_Match = _refused_statement("match", "class patterns read attributes by name; use if")


def check_source(source: str, contract: Contract) -> list[Violation]:
    """Every violation of the policy under the task's `contract`, in source order; [] when
    the source is acceptable.

    A syntax error is one violation naming its line. A source that does not define the
    contract's symbol at the top level is one too.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        return [Violation(e.lineno or 0, "syntax", e.msg)]
    except (ValueError, RecursionError, MemoryError) as e:  # NUL bytes; absurd nesting
        return [Violation(1, "syntax", f"the source does not parse: {type(e).__name__}")]
    try:
        checker = _Checker(tree, contract)
        checker.visit(tree)
    except RecursionError:
        return [Violation(1, "nesting", "expressions nest too deeply to check; split them up")]
    kind = ast.ClassDef if contract.symbol_kind == "class" else ast.FunctionDef
    if not any(isinstance(n, kind) and n.name == contract.symbol for n in tree.body):
        checker.violations.append(Violation(
            1, f"{contract.symbol_kind} {contract.symbol}",
            f"the candidate must define {contract.described}"))  # fmt: skip
    unique = dict.fromkeys(checker.violations)
    return sorted(unique, key=lambda v: v.line)
