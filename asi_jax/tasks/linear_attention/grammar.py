"""A grammar of linear-attention mixer designs, and its rendering as candidate source.

A `Design` picks one option per component; `render` writes a readable, self-contained
Flax NNX module that follows the candidate contract (imports only jax, flax.nnx and
pallas_kernels) and so passes the static policy. The offline researcher searches this
space; the baselines have grammar equivalents (`BASELINE_DESIGNS`) so they can be parents.

Components:
  rule         state update: additive (linear attention), decay (gated linear attention),
               delta (DeltaNet), gated_delta (Gated DeltaNet)
  decay        scalar per head (simple_gla / gated_delta_rule) or per key channel (gla)
  decay_param  mamba (-exp(A) * softplus(x W + dt_bias)) or logsigmoid (log sigmoid(x W) / 16)
  feature_map  on q and k: identity, silu, elu1 (elu + 1), relu
  qk_norm      l2 or none (the delta rules always use l2: their update needs unit keys)
  conv         short causal depthwise conv + SiLU on none / k / qk / qkv, width conv_size
  beta         sigmoid (0, 1), sigmoid2 (0, 2) (negative eigenvalues), normalised b / (1 + b)
  output_norm  per-head RMS norm or none
  output_gate  none, sigmoid or silu of a projection of the input
  second_path  none or a second update rule on the same q, k, v, fused per head and token by
               a learned softmax router
  head_mix     a learned head-by-head mixing of the outputs (starts as the identity)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

RULES = ("additive", "decay", "delta", "gated_delta")
OPTIONS: dict[str, tuple] = {
    "rule": RULES,
    "decay": ("scalar", "channel"),
    "decay_param": ("mamba", "logsigmoid"),
    "feature_map": ("identity", "silu", "elu1", "relu"),
    "qk_norm": ("l2", "none"),
    "conv": ("none", "k", "qk", "qkv"),
    "conv_size": (2, 4),
    "beta": ("sigmoid", "sigmoid2", "normalised"),
    "output_norm": ("rms", "none"),
    "output_gate": ("none", "sigmoid", "silu"),
    "second_path": ("none", *RULES),
    "head_mix": (False, True),
}


@dataclasses.dataclass(frozen=True)
class Design:
    rule: str = "delta"
    decay: str = "scalar"
    decay_param: str = "mamba"
    feature_map: str = "identity"
    qk_norm: str = "l2"
    conv: str = "qkv"
    conv_size: int = 4
    beta: str = "sigmoid"
    output_norm: str = "rms"
    output_gate: str = "none"
    second_path: str = "none"
    head_mix: bool = False

    def __post_init__(self):
        for name, options in OPTIONS.items():
            if getattr(self, name) not in options:
                raise ValueError(f"design.{name} must be one of {options}, got "
                                 f"{getattr(self, name)!r}")  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> Design:
        return cls(**values)

    def key(self) -> str:
        """Identifies the canonical design (what `canonical` keeps)."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:12]

    def uses_decay(self) -> bool:
        return "decay" in (self.rule, self.second_path) or "gated_delta" in (
            self.rule, self.second_path)  # fmt: skip

    def uses_delta(self) -> bool:
        return bool({"delta", "gated_delta"} & {self.rule, self.second_path})


def canonical(design: Design) -> Design:
    """The same design with the options it does not use reset to their defaults, and its
    constraints applied, so equal behaviour means equal designs."""
    d, defaults = design, Design()
    changes: dict[str, Any] = {}
    if d.uses_delta():
        changes["qk_norm"] = "l2"  # the delta rule is only a contraction for unit keys
    else:
        changes["beta"] = defaults.beta
    if not d.uses_decay():
        changes["decay"], changes["decay_param"] = defaults.decay, defaults.decay_param
    if d.second_path == d.rule:
        changes["second_path"] = "none"
    if d.conv == "none":
        changes["conv_size"] = defaults.conv_size
    if d.decay == "channel":
        # per-channel decays exist for the decay rule only (gla); the gated delta rule's is
        # scalar, and the channel gate uses the logsigmoid form with its temperature
        if "decay" not in (d.rule, d.second_path):
            changes["decay"] = "scalar"
        else:
            changes["decay_param"] = "logsigmoid"
    return dataclasses.replace(d, **changes)


def differences(a: Design, b: Design) -> dict[str, tuple[Any, Any]]:
    """{component: (a's option, b's option)} where they differ."""
    return {f: (getattr(a, f), getattr(b, f)) for f in OPTIONS if getattr(a, f) != getattr(b, f)}


def short_name(design: Design) -> str:
    """A readable tag: the update rule and the components that differ from DeltaNet."""
    parts = [design.rule.replace("_", "")]
    base = BASELINE_DESIGNS["deltanet"]
    for field, (_, value) in differences(base, design).items():
        if field == "rule":
            continue
        parts.append(f"{field.replace('_', '')}-{str(value).lower()}")
    return "_".join(parts)


# The baselines, written in the grammar (their registry classes are what actually trains).
BASELINE_DESIGNS: dict[str, Design] = {
    "deltanet": Design(),
    "gated_deltanet": Design(rule="gated_delta", output_gate="silu"),
    "linear_attention": canonical(
        Design(rule="additive", feature_map="elu1", qk_norm="none", conv="none")
    ),
}

# ------------------------------------------------------------------------------------------
# Rendering. Each component contributes lines to __init__ and to __call__.

_FEATURE_MAPS = {
    "identity": None,
    "silu": "jax.nn.silu({})",
    "elu1": "jax.nn.elu({}) + 1.0",
    "relu": "jax.nn.relu({})",
}
_GATES = {"sigmoid": "jax.nn.sigmoid", "silu": "jax.nn.silu"}
_BETAS = {
    "sigmoid": "jax.nn.sigmoid({})",
    "sigmoid2": "2.0 * jax.nn.sigmoid({})",
    "normalised": "jax.nn.softplus({0}) / (1.0 + jax.nn.softplus({0}))",
}


def _path_call(rule: str, design: Design, index: int) -> list[str]:
    """Lines computing the output `o{index}` of one update rule from q, k, v, x."""
    o, lines = f"o{index}", []
    needs_decay = rule in ("decay", "gated_delta")
    if needs_decay:
        channel = rule == "decay" and design.decay == "channel"
        raw = f"self.decay{index}(x).astype(jnp.float32)"
        if channel:
            lines.append(f"g{index} = (jax.nn.log_sigmoid({raw}) / 16.0).reshape(b, t, h, dk)")
        elif design.decay_param == "mamba":
            lines.append(f"dt{index} = jax.nn.softplus({raw} + self.dt_bias{index}[...])")
            lines.append(f"g{index} = -jnp.exp(self.a_log{index}[...]) * dt{index}")
        else:
            lines.append(f"g{index} = jax.nn.log_sigmoid({raw}) / 16.0")
    if rule in ("delta", "gated_delta"):
        raw = f"self.beta{index}(x).astype(jnp.float32)"
        lines.append(f"beta{index} = {_BETAS[design.beta].format(raw)}")
    call = {
        "additive": "pallas_kernels.linear_attention(q, k, v)",
        "decay": (
            f"pallas_kernels.gla(q, k, v, g{index})"
            if design.decay == "channel"
            else f"pallas_kernels.simple_gla(q, k, v, g{index})"
        ),
        "delta": f"pallas_kernels.delta_rule(q, k, v, beta{index})",
        "gated_delta": f"pallas_kernels.gated_delta_rule(q, k, v, g{index}, beta{index})",
    }[rule]
    lines.append(f"{o}, _ = {call}")
    return lines


def _path_init(rule: str, design: Design, index: int) -> list[str]:
    lines = []
    if rule in ("decay", "gated_delta"):
        channel = rule == "decay" and design.decay == "channel"
        if channel:
            lines.append(f"self.decay{index} = nnx.Linear(d_model, d_model, rngs=rngs)")
        else:
            lines.append(f"self.decay{index} = nnx.Linear(d_model, num_heads, rngs=rngs)")
            if design.decay_param == "mamba":
                lines.append(f"self.a_log{index}, self.dt_bias{index} = "
                             "decay_parameters(num_heads, rngs)")  # fmt: skip
    if rule in ("delta", "gated_delta"):
        lines.append(f"self.beta{index} = nnx.Linear(d_model, num_heads, rngs=rngs)")
    return lines


_DECAY_HELPER = '''

def decay_parameters(num_heads: int, rngs: nnx.Rngs) -> tuple[nnx.Param, nnx.Param]:
    """Mamba2's decay initialisation: A in [1, 16], softplus(dt_bias) in [1e-3, 0.1]."""
    a = jax.random.uniform(rngs.params(), (num_heads,), minval=1.0, maxval=16.0)
    dt = jnp.exp(jax.random.uniform(rngs.params(), (num_heads,), minval=-6.9, maxval=-2.3))
    return nnx.Param(jnp.log(a)), nnx.Param(dt + jnp.log(-jnp.expm1(-dt)))
'''

_L2_HELPER = """

def l2_normalize(x: jax.Array) -> jax.Array:
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + 1e-6)
"""


_DESIGN_TAG = "Design: "


def design_from_source(source: str) -> Design | None:
    """The design a rendered source was made from (its docstring's `Design:` line)."""
    for line in source.splitlines():
        line = line.lstrip('"')
        if line.startswith(_DESIGN_TAG):
            try:
                return Design.from_json(json.loads(line[len(_DESIGN_TAG) :]))
            except (ValueError, TypeError):
                return None
    return None


def _indent(lines: list[str], depth: int) -> str:
    pad = " " * (4 * depth)
    return "\n".join(pad + line if line else "" for line in lines)


def render(design: Design, *, docstring: str = "") -> str:
    """Flax NNX source for `design` (canonicalised first), following the candidate contract."""
    d = canonical(design)
    paths = [d.rule] + ([d.second_path] if d.second_path != "none" else [])
    conv_targets = {"none": "", "k": "k", "qk": "qk", "qkv": "qkv"}[d.conv]

    init = [
        "self.num_heads = num_heads",
        "self.q = nnx.Linear(d_model, d_model, use_bias=False, rngs=rngs)",
        "self.k = nnx.Linear(d_model, d_model, use_bias=False, rngs=rngs)",
        "self.v = nnx.Linear(d_model, d_model, use_bias=False, rngs=rngs)",
    ]
    for name in conv_targets:
        init.append(
            f"self.conv_{name} = nnx.Conv(d_model, d_model, kernel_size=({d.conv_size},), "
            "feature_group_count=d_model, padding='CAUSAL', rngs=rngs)"
        )
    for i, rule in enumerate(paths):
        init += _path_init(rule, d, i)
    if len(paths) > 1:
        init.append("# router over the paths, per head; zero init = equal weights at start")
        init.append(f"self.router = nnx.Linear(d_model, num_heads * {len(paths)}, "
                    "kernel_init=nnx.initializers.zeros_init(), rngs=rngs)")  # fmt: skip
    if d.head_mix:
        init.append("self.head_mix = nnx.Param(jnp.eye(num_heads))  # starts as no mixing")
    if d.output_norm == "rms":
        init.append("self.norm_scale = nnx.Param(jnp.ones((d_model // num_heads,)))")
    if d.output_gate != "none":
        init.append("self.gate = nnx.Linear(d_model, d_model, use_bias=False, rngs=rngs)")
    init.append("self.out = nnx.Linear(d_model, d_model, use_bias=False, rngs=rngs)")

    call = ["b, t, d = x.shape", "h = self.num_heads", "dk = d // h"]
    for name in "qkv":
        projected = f"self.{name}(x)"
        if name in conv_targets:
            projected = f"jax.nn.silu(self.conv_{name}({projected}))"
        call.append(f"{name} = {projected}.reshape(b, t, h, dk)")
    feature = _FEATURE_MAPS[d.feature_map]
    if feature:
        call.append(f"q, k = {feature.format('q')}, {feature.format('k')}")
    if d.qk_norm == "l2":
        call.append("q, k = l2_normalize(q), l2_normalize(k)")
    for i, rule in enumerate(paths):
        call += _path_call(rule, d, i)
    if len(paths) > 1:
        call.append(f"weights = jax.nn.softmax(self.router(x).reshape(b, t, h, {len(paths)}), "
                    "axis=-1)")  # fmt: skip
        fused = " + ".join(f"weights[..., {i}:{i + 1}] * o{i}" for i in range(len(paths)))
        call.append(f"o = {fused}")
    else:
        call.append("o = o0")
    if d.head_mix:
        call.append("o = jnp.einsum('bthv,hg->btgv', o, self.head_mix[...])")
    if d.output_norm == "rms":
        call.append("o = o * jax.lax.rsqrt(jnp.mean(o * o, axis=-1, keepdims=True) + 1e-6)")
        call.append("o = o * self.norm_scale[...]")
    call.append("o = o.reshape(b, t, d).astype(x.dtype)")
    if d.output_gate != "none":
        call.append(f"o = o * {_GATES[d.output_gate]}(self.gate(x))")
    call.append("return self.out(o)")

    mamba_decay = d.decay_param == "mamba" and d.uses_decay()
    helpers = (_L2_HELPER if d.qk_norm == "l2" else "") + (_DECAY_HELPER if mamba_decay else "")
    doc = (docstring.strip() + "\n\n" if docstring.strip() else "").replace('"""', "'''")
    doc += f"{_DESIGN_TAG}{json.dumps(d.to_json(), sort_keys=True)}"
    return (
        f'"""{doc}\n"""\n\n'
        "import jax\nimport jax.numpy as jnp\nfrom flax import nnx\n\nimport pallas_kernels\n"
        f"{helpers}\n\n"
        "class Mixer(nnx.Module):\n"
        "    def __init__(self, d_model: int, num_heads: int, *, rngs: nnx.Rngs):\n"
        f"{_indent(init, 2)}\n\n"
        "    def __call__(self, x: jax.Array) -> jax.Array:\n"
        f"{_indent(call, 2)}\n"
    )
