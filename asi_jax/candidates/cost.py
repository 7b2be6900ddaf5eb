"""The FLOPs a traced program does, counted on its jaxpr: loops times their trip counts.

    flops = jaxpr_flops(jax.make_jaxpr(f)(*args))

XLA's cost analysis counts the body of a `lax.scan` once, so exact attention written as a
scan over positions looks linear to it, and it counts `jnp.cumsum` (a reduce_window) as
quadratic. This walk multiplies `scan` bodies by their length, `while` bodies by their trip
count and Pallas kernels by their grid, takes the dearest branch of a `cond`, and counts
each primitive by the work its operation needs: contractions by their contracted size, FFTs
as 5 N log2 N, sorts as N log2 N, windowed reductions by their window, and anything
else by the larger of its operands' and results' sizes (linear: elementwise, reductions,
cumulative sums). Reads and writes of a slice count the slice, not the array it is
taken from, so a loop that visits one row per step stays linear.

A `while` loop counts only when its trip count is a constant (the loops `lax.fori_loop`
builds, `i < n` with `i` stepping by 1 from a constant): a loop that runs until a
data-dependent condition has no cost the checker can bound, and `UnboundedLoop` says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from jax.extend import core

# Slicing reads: their cost is what they read, not the array they read from.
_READS = frozenset({"slice", "dynamic_slice", "gather", "get", "masked_load"})
# Writes into a slice, in place: the position of the written value among the operands.
_WRITES = {"dynamic_update_slice": 1, "swap": 1, "masked_swap": 1, "addupdate": 1,
           "scatter": 2, "scatter-add": 2, "scatter-mul": 2, "scatter-min": 2,
           "scatter-max": 2}  # fmt: skip
# Dense factorisations of the trailing [n, n] matrices: n^3 each.
_CUBIC = frozenset({"cholesky", "lu", "qr", "eig", "eigh", "svd", "schur", "hessenberg",
                    "householder_product", "geqrf", "geqp3", "ormqr", "tridiagonal",
                    "symmetric_product"})  # fmt: skip


class UnboundedLoop(Exception):
    """A loop whose trip count is not a constant of the program; says which."""


def _aval_size(aval: Any) -> int:
    aval = getattr(aval, "inner_aval", aval)  # a Pallas Ref: the array behind it
    shape = getattr(aval, "shape", None)
    return int(np.prod(shape)) if shape is not None else 1


def _size(atom: Any) -> int:
    return _aval_size(atom.aval)


def _sub_jaxprs(value: Any) -> Iterator[core.Jaxpr | core.ClosedJaxpr]:
    if isinstance(value, (core.ClosedJaxpr, core.Jaxpr)):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _sub_jaxprs(item)


def _run(value: Any) -> float:
    """The FLOPs of one run of a sub-program, closed (with constants) or open."""
    if isinstance(value, core.ClosedJaxpr):
        return _flops(value.jaxpr, value.consts)
    return _flops(value, ())


def _constant(atom: Any, known: Mapping[Any, int]) -> int | None:
    if isinstance(atom, core.Literal):
        value = np.asarray(atom.val)
        return int(value) if value.shape == () and value.dtype.kind in "iu" else None
    return known.get(atom)


def _while_trips(eqn: core.JaxprEqn, known: Mapping[Any, int]) -> int:
    """The trip count of a `fori_loop`-shaped while: `carry[k] < bound`, carry[k] starting
    at a constant and growing by 1 per step, bound a constant or an unchanged carry."""
    p = eqn.params
    cond, body = p["cond_jaxpr"].jaxpr, p["body_jaxpr"].jaxpr
    n_cond, n_body = p["cond_nconsts"], p["body_nconsts"]
    init = eqn.invars[n_cond + n_body :]
    cond_carry = cond.invars[n_cond:]
    (out,) = cond.outvars
    test = next((e for e in cond.eqns if out in e.outvars), None)
    if test is None or test.primitive.name != "lt" or test.invars[0] not in cond_carry:
        raise UnboundedLoop("a while loop whose condition is not `counter < bound`")
    k = cond_carry.index(test.invars[0])
    start = _constant(init[k], known)
    bound_atom = test.invars[1]
    if bound_atom in cond_carry:
        j = cond_carry.index(bound_atom)
        if body.outvars[j] is not body.invars[n_body + j]:
            raise UnboundedLoop("a while loop whose bound changes inside the loop")
        bound = _constant(init[j], known)
    else:
        bound = _constant(bound_atom, known)
    step = next((e for e in body.eqns if body.outvars[k] in e.outvars), None)
    counter = body.invars[n_body + k]
    steps_by_one = (
        step is not None
        and step.primitive.name == "add"
        and counter in step.invars
        and any(_constant(a, {}) == 1 for a in step.invars if a is not counter)
    )
    if start is None or bound is None or not steps_by_one:
        raise UnboundedLoop("a while loop whose counter or bound is not a constant stepping by 1")
    return max(0, bound - start)


def _own_flops(eqn: core.JaxprEqn) -> float:
    """The work of one primitive that holds no sub-program."""
    name, p = eqn.primitive.name, eqn.params
    ins = [_size(a) for a in eqn.invars]
    outs = [_aval_size(v.aval) for v in eqn.outvars]
    if name == "dot_general":
        (lhs_contract, _), _ = p["dimension_numbers"]
        shape = eqn.invars[0].aval.shape
        return 2.0 * outs[0] * math.prod(shape[d] for d in lhs_contract)
    if name == "conv_general_dilated":
        rhs = eqn.invars[1].aval.shape
        out_features = rhs[p["dimension_numbers"].rhs_spec[0]]
        return 2.0 * outs[0] * math.prod(rhs) / out_features
    if name == "fft":
        n = math.prod(p["fft_lengths"])
        batch = max(*ins, *outs) / n
        return 5.0 * batch * n * math.log2(max(n, 2))
    if name == "sort":
        dim = eqn.invars[0].aval.shape[p["dimension"]] if eqn.invars[0].aval.shape else 1
        return float(sum(ins)) * math.log2(max(dim, 2))
    if name.startswith("reduce_window") or name.startswith("select_and_"):
        window = math.prod(p["window_dimensions"])
        return float(max(*ins, *outs)) * window
    if name == "triangular_solve":
        m = eqn.invars[0].aval.shape[-1]
        return float(ins[1]) * m
    if name in _CUBIC:
        n = eqn.invars[0].aval.shape[-1] if eqn.invars[0].aval.shape else 1
        return float(ins[0]) * n
    if name in _READS:
        return float(sum(outs))
    if name in _WRITES and len(ins) > _WRITES[name]:
        return float(ins[_WRITES[name]])
    return float(max(sum(ins), sum(outs), 1))


def _eqn_flops(eqn: core.JaxprEqn, known: Mapping[Any, int]) -> float:
    name, p = eqn.primitive.name, eqn.params
    if name == "scan":
        return p["length"] * _run(p["jaxpr"])
    if name == "while":
        return _while_trips(eqn, known) * (_run(p["body_jaxpr"]) + _run(p["cond_jaxpr"]))
    if name == "cond":
        return max(_run(b) for b in p["branches"])
    if name == "pallas_call":
        grid = p["grid_mapping"].grid
        if not all(isinstance(g, (int, np.integer)) for g in grid):
            raise UnboundedLoop(f"a Pallas kernel whose grid {grid} is not a constant")
        return math.prod(grid) * _run(p["jaxpr"])
    subs = [j for value in p.values() for j in _sub_jaxprs(value)]
    if subs:  # jit, custom_jvp / custom_vjp, remat, custom_linear_solve, ...: each once
        return sum(_run(j) for j in subs)
    return _own_flops(eqn)


def _flops(jaxpr: core.Jaxpr, consts) -> float:
    known: dict[Any, int] = {}
    for var, value in zip(jaxpr.constvars, consts, strict=False):
        dtype = getattr(value, "dtype", None)  # PRNG keys have a dtype numpy does not know
        scalar = getattr(value, "shape", None) == ()
        if scalar and isinstance(dtype, np.dtype) and dtype.kind in "iu":
            known[var] = int(value)
    total = 0.0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "convert_element_type":
            value = _constant(eqn.invars[0], known)
            if value is not None:
                known[eqn.outvars[0]] = value
        total += _eqn_flops(eqn, known)
    return total


def jaxpr_flops(closed: core.ClosedJaxpr) -> float:
    """The FLOPs of running `closed` once; raises UnboundedLoop for a while loop without a
    constant trip count."""
    return _run(closed)
