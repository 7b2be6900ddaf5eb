"""A grammar of optimizer designs, and its rendering as candidate source.

A design picks one option per component; `render` writes a readable candidate file (one
`make_optimizer(learning_rate)` built from a custom direction transformation and optax's
building blocks) that follows the contract, so it passes the static policy and the check.
Designs are canonical dicts (`canonical`): options a design does not use are reset to the
defaults, so equal behaviour means equal dicts, and `Task.design_key`'s JSON default works.

The update, in order:
  direction        sgd (the momentum itself), adam (momentum / sqrt of an EMA of g^2),
                   factored (Adafactor's row and column EMAs of g^2 for tensors of rank >= 2,
                   a full EMA for the rest), sign (Lion: the sign of an interpolation of
                   momentum and gradient), orthogonal (Muon: Newton-Schulz orthogonalised
                   momentum for matrices, rescaled to Adam's RMS; adam for the rest)
  momentum         none, ema (first moment with beta1 0.9), nesterov (look-ahead: the next
                   EMA's value); for sign, ema is Lion's (interpolate 0.9, track beta2)
  beta2            decay of the second moment (Lion: of the tracked momentum)
  bias_correction  divide the EMAs by 1 - beta^t (Adam); not for sign
  clip             none or rms: each tensor's update scaled to RMS at most 1 (Adafactor)
  weight_decay     decoupled, on tensors of rank >= 2, times the learning rate (AdamW)
  trust_ratio      per-tensor ||param|| / ||update|| (LAMB), after the weight decay
  lr_scale         a constant on the stage's schedule (Lion wants smaller, SGD larger)
"""

from __future__ import annotations

import hashlib
import json
import textwrap
from collections.abc import Mapping
from typing import Any

DIRECTIONS = ("adam", "sgd", "factored", "sign", "orthogonal")
OPTIONS: dict[str, tuple] = {
    "direction": DIRECTIONS,
    "momentum": ("ema", "nesterov", "none"),
    "beta2": (0.95, 0.99, 0.999),
    "bias_correction": (True, False),
    "clip": ("none", "rms"),
    "weight_decay": (0.1, 0.0, 0.01, 0.3),
    "trust_ratio": (False, True),
    "lr_scale": (1.0, 0.3, 3.0),
}
# The first option of each component; also AdamW's design.
DEFAULTS: dict[str, Any] = {name: options[0] for name, options in OPTIONS.items()}

Design = dict[str, Any]


def validate(design: Mapping[str, Any]) -> Design:
    """`design` with every component present (defaults filled in); unknown components or
    options raise ValueError."""
    unknown = sorted(set(design) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown design components {unknown}; known: {sorted(OPTIONS)}")
    full = {**DEFAULTS, **design}
    for name, options in OPTIONS.items():
        if full[name] not in options:
            raise ValueError(f"design.{name} must be one of {options}, got {full[name]!r}")
    # JSON brings floats back as floats and ints as ints: keep the option's own value
    return {name: next(o for o in OPTIONS[name] if o == full[name]) for name in OPTIONS}


def canonical(design: Mapping[str, Any]) -> Design:
    """The same design with the options it does not use reset to their defaults."""
    d = validate(design)
    if d["direction"] == "sign":
        d["bias_correction"] = DEFAULTS["bias_correction"]  # a sign has no scale to correct
        if d["momentum"] == "nesterov":
            d["momentum"] = "ema"  # Lion's interpolation already looks ahead
        if d["momentum"] == "none":
            d["beta2"] = DEFAULTS["beta2"]  # signSGD tracks nothing
    if d["direction"] == "sgd":
        d["beta2"] = DEFAULTS["beta2"]
        if d["momentum"] == "none":
            d["bias_correction"] = DEFAULTS["bias_correction"]
    return d


def key(design: Mapping[str, Any]) -> str:
    """A short hash of the canonical design (for names; the task's design_key is the JSON)."""
    text = json.dumps(canonical(design), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """{component: (a's option, b's option)} where the canonical designs differ."""
    a, b = canonical(a), canonical(b)
    return {name: (a[name], b[name]) for name in OPTIONS if a[name] != b[name]}


def every_design() -> list[Design]:
    """Every canonical design, once each."""
    designs: list[Design] = [{}]
    for name, options in OPTIONS.items():
        designs = [{**d, name: o} for d in designs for o in options]
    unique = {json.dumps(canonical(d), sort_keys=True): canonical(d) for d in designs}
    return list(unique.values())


def short_name(design: Mapping[str, Any]) -> str:
    """A readable tag: the direction and the components that differ from AdamW's."""
    d = canonical(design)
    parts = [d["direction"]]
    for name, (_, value) in differences(BASELINE_DESIGNS["adamw"], d).items():
        if name != "direction":
            parts.append(f"{name.replace('_', '')}-{str(value).lower()}")
    return "_".join(parts)


# The baselines in the grammar. AdamW's is exact; Lion's is exact; Adafactor's is close
# (optax's decays beta2 with the step, 1 - t^-0.8, where the grammar's is constant).
BASELINE_DESIGNS: dict[str, Design] = {
    "adamw": canonical({}),
    "lion": canonical({"direction": "sign", "beta2": 0.99, "weight_decay": 0.3, "lr_scale": 0.3}),
    "adafactor": canonical(
        {
            "direction": "factored",
            "momentum": "none",
            "beta2": 0.999,
            "clip": "rms",
            "weight_decay": 0.0,
        }
    ),
}

# ------------------------------------------------------------------------------------------
# Rendering.

DESIGN_TAG = "Design: "
_B1 = 0.9
_EPS = 1e-8

_MOMENTUM_DOC = {
    "none": "the gradient itself (no momentum)",
    "ema": f"an EMA of gradients with beta1 {_B1}",
    "nesterov": f"a Nesterov look-ahead of the EMA of gradients (beta1 {_B1})",
}
_DIRECTION_DOC = {
    "sgd": "is used as it is",
    "adam": "is divided by the square root of an EMA of squared gradients",
    "factored": "is divided by the square root of a factored (row x column) EMA of squared "
    "gradients",
    "sign": "is replaced by its sign",
    "orthogonal": "is orthogonalised by Newton-Schulz iterations for matrices (adam for "
    "the other tensors)",
}

_SECOND_MOMENT_HELPERS = '''

def second_moment_init(p: jax.Array) -> tuple:
    """Row and column statistics for tensors of rank >= 2, the full tensor otherwise."""
    if p.ndim >= 2:
        return (jnp.zeros(p.shape[:-1], jnp.float32),
                jnp.zeros(p.shape[:-2] + p.shape[-1:], jnp.float32))
    return (jnp.zeros(p.shape, jnp.float32),)


def second_moment_update(g: jax.Array, v: tuple, b2: float) -> tuple:
    g2 = g * g + 1e-30
    if g.ndim >= 2:
        return (b2 * v[0] + (1.0 - b2) * jnp.mean(g2, axis=-1),
                b2 * v[1] + (1.0 - b2) * jnp.mean(g2, axis=-2))
    return (b2 * v[0] + (1.0 - b2) * g2,)


def second_moment_value(v: tuple) -> jax.Array:
    """The full estimate: the outer product of row and column EMAs over the row mean."""
    if len(v) == 2:
        row, col = v
        return row[..., :, None] * col[..., None, :] / jnp.mean(row, axis=-1)[..., None, None]
    return v[0]
'''

_ORTHOGONAL_HELPER = '''

def orthogonalize(m: jax.Array) -> jax.Array:
    """Five Newton-Schulz iterations towards the nearest semi-orthogonal matrix (Muon's
    coefficients), rescaled so its RMS is about 0.2, as Adam's updates are."""
    a, b, c = 3.4445, -4.7750, 2.0315
    wide = m.shape[0] <= m.shape[1]
    x = m if wide else m.T
    x = x / (jnp.linalg.norm(x) + 1e-7)
    for _ in range(5):
        s = x @ x.T
        x = a * x + (b * s + c * (s @ s)) @ x
    x = x if wide else x.T
    return x * (0.2 * math.sqrt(max(m.shape)))
'''

_MATRICES_HELPER = '''

def matrices(params):
    """Weight decay applies to tensors of rank >= 2 (not to biases, norms and scalars)."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)
'''


def _uses_nu(d: Design) -> bool:
    return d["direction"] in ("adam", "factored", "orthogonal")


def _uses_mu(d: Design) -> bool:
    return d["momentum"] != "none"


def _update_lines(d: Design) -> list[str]:
    """The body of the direction transformation's update, from `updates` and `state`."""
    direction, momentum, bc = d["direction"], d["momentum"], d["bias_correction"]
    lines = [
        "count = state.count + 1",
        "t = count.astype(jnp.float32)",
        "grads = jax.tree.map(lambda g: g.astype(jnp.float32), updates)",
    ]
    if direction == "sign":
        if momentum == "none":
            lines += ["direction = jax.tree.map(jnp.sign, grads)", "mu = state.mu"]
        else:
            lines += [
                f"direction = jax.tree.map(lambda m, g: jnp.sign({_B1} * m + {1 - _B1:.1f} * g),"
                " state.mu, grads)",
                f"mu = jax.tree.map(lambda m, g: {d['beta2']} * m + {1 - d['beta2']:.3g} * g, "
                "state.mu, grads)",
            ]
        lines.append("nu = state.nu")
    else:
        if momentum == "none":
            lines += ["mu = state.mu", "m_hat = grads"]
        else:
            lines.append(f"mu = jax.tree.map(lambda m, g: {_B1} * m + {1 - _B1:.1f} * g, "
                         "state.mu, grads)")  # fmt: skip
            if momentum == "ema":
                scale = f" / (1.0 - {_B1} ** t)" if bc else ""
                lines.append(f"m_hat = jax.tree.map(lambda m: m{scale}, mu)")
            else:  # the EMA one step ahead: beta1 * mu_t + (1 - beta1) * g_t, each corrected
                now, ahead = (f" / (1.0 - {_B1} ** t)", f" / (1.0 - {_B1} ** (t + 1.0))") if bc \
                    else ("", "")  # fmt: skip
                lines.append(f"m_hat = jax.tree.map(lambda m, g: {_B1} * m{ahead} + "
                             f"{1 - _B1:.1f} * g{now}, mu, grads)")  # fmt: skip
        b2, vscale = d["beta2"], f" / (1.0 - {d['beta2']} ** t)" if bc else ""
        if direction == "sgd":
            lines += ["nu = state.nu", "direction = m_hat"]
        elif direction == "adam":
            lines += [
                f"nu = jax.tree.map(lambda v, g: {b2} * v + {1 - b2:.3g} * g * g, state.nu, grads)",
                f"direction = jax.tree.map(lambda m, v: m / (jnp.sqrt(v{vscale}) + {_EPS}), "
                "m_hat, nu)",
            ]
        elif direction == "factored":
            lines += [
                f"nu = jax.tree.map(lambda g, v: second_moment_update(g, v, {b2}), grads, "
                "state.nu)",
                "direction = jax.tree.map(lambda m, v: m / (jnp.sqrt(second_moment_value(v)"
                f"{vscale}) + {_EPS}), m_hat, nu)",
            ]
        else:  # orthogonal: matrices by Newton-Schulz, the rest by Adam
            lines += [
                f"nu = jax.tree.map(lambda v, g: v if g.ndim == 2 else {b2} * v + "
                f"{1 - b2:.3g} * g * g, state.nu, grads)",
                "direction = jax.tree.map(lambda m, v: orthogonalize(m) if m.ndim == 2 else "
                f"m / (jnp.sqrt(v{vscale}) + {_EPS}), m_hat, nu)",
            ]
    lines += [
        "updates = jax.tree.map(lambda u, g: u.astype(g.dtype), direction, updates)",
        "return updates, DirectionState(count=count, mu=mu, nu=nu)",
    ]
    return lines


def _init_lines(d: Design) -> list[str]:
    zeros = "jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)"
    mu = zeros if _uses_mu(d) else "()"
    if d["direction"] == "factored":
        nu = "jax.tree.map(second_moment_init, params)"
    elif d["direction"] == "orthogonal":  # no second moment for the orthogonalised matrices
        nu = ("jax.tree.map(lambda p: jnp.zeros(() if p.ndim == 2 else p.shape, jnp.float32), "
              "params)")  # fmt: skip
    else:
        nu = zeros if _uses_nu(d) else "()"
    return [f"mu = {mu}", f"nu = {nu}",
            "return DirectionState(count=jnp.zeros((), jnp.int32), mu=mu, nu=nu)"]  # fmt: skip


def _chain_lines(d: Design) -> list[str]:
    lines = ["scale_by_direction(),"]
    if d["clip"] == "rms":
        lines.append("optax.clip_by_block_rms(1.0),  # each tensor's update at RMS <= 1")
    if d["weight_decay"]:
        lines.append(f"optax.add_decayed_weights({d['weight_decay']}, mask=matrices),")
    if d["trust_ratio"]:
        lines.append("optax.scale_by_trust_ratio(),  # per tensor: ||param|| / ||update||")
    if d["lr_scale"] == 1.0:
        lines.append("optax.scale_by_learning_rate(learning_rate),")
    else:
        lines.append(f"optax.scale_by_learning_rate(lambda step: {d['lr_scale']} * "
                     "learning_rate(step)),")  # fmt: skip
    return lines


def _indent(lines: list[str], depth: int) -> str:
    pad = " " * (4 * depth)
    return "\n".join(pad + line if line else "" for line in lines)


def describe(design: Mapping[str, Any]) -> str:
    """One paragraph: what the design's update does."""
    d = canonical(design)
    text = f"The momentum, {_MOMENTUM_DOC[d['momentum']]}, {_DIRECTION_DOC[d['direction']]}"
    if d["direction"] == "sign" and d["momentum"] == "ema":
        text = (f"The sign of an interpolation (beta1 {_B1}) of the tracked momentum (beta2 "
                f"{d['beta2']}) and the gradient is the update (Lion)")  # fmt: skip
    elif d["direction"] == "sign":
        text = "The sign of the gradient is the update (signSGD)"
    if d["direction"] in ("adam", "factored", "orthogonal"):
        text += f" (beta2 {d['beta2']})"
    if d["direction"] != "sign" and (d["momentum"] != "none" or d["direction"] != "sgd"):
        text += ", with" if d["bias_correction"] else ", without"
        text += " bias correction"
    parts = [text + "."]
    if d["clip"] == "rms":
        parts.append("Each tensor's update is clipped to RMS 1.")
    if d["weight_decay"]:
        parts.append(f"Decoupled weight decay {d['weight_decay']} on matrices.")
    if d["trust_ratio"]:
        parts.append("A per-tensor trust ratio ||param|| / ||update|| scales the step.")
    if d["lr_scale"] != 1.0:
        parts.append(f"The schedule is scaled by {d['lr_scale']}.")
    return " ".join(parts)


def render(design: Mapping[str, Any], *, docstring: str = "") -> str:
    """Candidate source for `design` (canonicalised first), following the contract."""
    d = canonical(design)
    helpers = ""
    if d["direction"] == "factored":
        helpers += _SECOND_MOMENT_HELPERS
    if d["direction"] == "orthogonal":
        helpers += _ORTHOGONAL_HELPER
    if d["weight_decay"]:
        helpers += _MATRICES_HELPER
    doc = (docstring.strip() + "\n\n" if docstring.strip() else "").replace('"""', "'''")
    doc += f"{textwrap.fill(describe(d), 92)}\n\n{DESIGN_TAG}{json.dumps(d, sort_keys=True)}"
    inner = {**d, "clip": "none", "weight_decay": 0.0, "trust_ratio": False, "lr_scale": 1.0}
    inner_doc = textwrap.fill(describe(inner), 88, subsequent_indent="    ")
    imports = "import math\nimport typing\n\n" if d["direction"] == "orthogonal" else \
        "import typing\n\n"  # fmt: skip
    return (
        f'"""{doc}\n"""\n\n'
        f"{imports}import jax\nimport jax.numpy as jnp\nimport optax\n\n\n"
        "class DirectionState(typing.NamedTuple):\n"
        "    count: jax.Array\n"
        "    mu: typing.Any  # first moment, per parameter (() without momentum)\n"
        "    nu: typing.Any  # second-moment statistics (() where there are none)\n"
        f"{helpers}\n\n"
        "def scale_by_direction() -> optax.GradientTransformation:\n"
        f'    """{inner_doc}"""\n\n'
        "    def init(params):\n"
        f"{_indent(_init_lines(d), 2)}\n\n"
        "    def update(updates, state, params=None):\n"
        f"{_indent(_update_lines(d), 2)}\n\n"
        "    return optax.GradientTransformation(init, update)\n\n\n"
        "def make_optimizer(learning_rate) -> optax.GradientTransformation:\n"
        "    return optax.chain(\n"
        f"{_indent(_chain_lines(d), 2)}\n"
        "    )\n"
    )


def design_from_source(source: str) -> Design | None:
    """The design a rendered source was made from (its docstring's `Design:` line)."""
    for line in source.splitlines():
        line = line.strip().lstrip('"')
        if line.startswith(DESIGN_TAG):
            try:
                return canonical(json.loads(line[len(DESIGN_TAG) :]))
            except (ValueError, TypeError, AttributeError):
                return None
    return None
