"""Linear-attention ops for JAX: a recurrent reference, a chunked XLA path, and Pallas kernels.

    from pallas_kernels import gated_delta_rule
    o, final_state = gated_delta_rule(q, k, v, g, beta, output_final_state=True)

See `pallas_kernels.ops` for the conventions shared by all five ops.
"""

from pallas_kernels.ops import (
    IMPLS,
    Impl,
    default_impl,
    delta_rule,
    gated_delta_rule,
    gla,
    linear_attention,
    resolve_impl,
    simple_gla,
)

OPS = {
    "linear_attention": linear_attention,
    "simple_gla": simple_gla,
    "gla": gla,
    "delta_rule": delta_rule,
    "gated_delta_rule": gated_delta_rule,
}

# The arguments each op takes after (q, k, v), in call order.
OP_EXTRA_ARGS: dict[str, tuple[str, ...]] = {
    "linear_attention": (),
    "simple_gla": ("g",),
    "gla": ("gk",),
    "delta_rule": ("beta",),
    "gated_delta_rule": ("g", "beta"),
}

__all__ = [
    "IMPLS",
    "OPS",
    "OP_EXTRA_ARGS",
    "Impl",
    "default_impl",
    "delta_rule",
    "gated_delta_rule",
    "gla",
    "linear_attention",
    "resolve_impl",
    "simple_gla",
]
