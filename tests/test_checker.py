"""The checker, in process: each way a mixer can cheat its measurement is caught for its
reason, ordinary mixers (the baselines among them) pass, and the cost walk counts loops."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from asi_jax.candidates.cost import UnboundedLoop, jaxpr_flops
from asi_jax.models.mixers import MIXERS
from asi_jax.tasks.linear_attention import checker
from asi_jax.tasks.linear_attention.checker import CheckConfig, check_mixer
from asi_jax.tasks.linear_attention.task import parameter_budget

ROOT = Path(__file__).resolve().parents[1]
# Small and quick, with T off any chunk size, three batch sizes and a cost length whose 4T
# stays short.
SMALL = CheckConfig(d_model=16, num_heads=2, batch_sizes=(1, 3), seq_lens=(1, 11),
                    causal_seq_len=16, cost_seq_len=32)  # fmt: skip
# What the engineer passes for training at B = 8, T = 32 (held-out batches of 8 too).
TRAINING = dataclasses.replace(SMALL, train_batch_sizes=(8, 0), train_seq_len=32)


def _shift(x: jax.Array) -> jax.Array:
    """x plus the previous position's x: causal."""
    return x + jnp.pad(x, ((0, 0), (1, 0), (0, 0)))[:, :-1]


def _next(x: jax.Array) -> jax.Array:
    """The next position's x (position T-1 gets position 0's): the future."""
    return jnp.roll(x, -1, axis=1)


def _mixer(body, **params):
    """A Mixer class: Linear(body(self, x)), with `params` (name -> initial array) as Params."""

    class Mixer(nnx.Module):
        def __init__(self, d_model, num_heads, *, rngs):
            self.proj = nnx.Linear(d_model, d_model, rngs=rngs)
            for name, value in params.items():
                setattr(self, name, nnx.Param(jnp.asarray(value, jnp.float32)))

        def __call__(self, x):
            return self.proj(body(self, x))

    return Mixer


def _failure(mixer_cls, config: CheckConfig = SMALL) -> tuple[str, str]:
    result = check_mixer(mixer_cls, config)
    assert not result["ok"], result
    return result["stage"], result["reason"]


def _passes(mixer_cls, config: CheckConfig = SMALL) -> dict:
    result = check_mixer(mixer_cls, config)
    assert result["ok"], (result["stage"], result["reason"])
    return result["figures"]


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"checked_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Mixer


# -- the cost walk ----------------------------------------------------------------------------


def _flops(fn, *shapes) -> float:
    return jaxpr_flops(jax.make_jaxpr(fn)(*(jnp.ones(s) for s in shapes)))


def test_a_scan_body_counts_once_per_step():
    def matmuls(x, n):
        return jax.lax.scan(lambda c, _: (c @ x, None), x, None, length=n)[0]

    one = _flops(lambda x: matmuls(x, 1), (8, 8))
    assert one == 2 * 8**3
    assert _flops(lambda x: matmuls(x, 10), (8, 8)) == 10 * one


def test_a_while_loop_counts_its_constant_trip_count_and_refuses_an_unknown_one():
    def body(i, c):
        return c @ c

    static = _flops(lambda x: jax.lax.fori_loop(0, 7, body, x), (4, 4))  # lowers to a scan
    counted = _flops(lambda x: jax.lax.fori_loop(jnp.int32(2), jnp.int32(9), body, x), (4, 4))
    # 7 matmuls of 2 * 4^3, plus the loop counter's additions and comparisons
    assert static == pytest.approx(7 * 2 * 4**3, rel=0.05)
    assert counted == pytest.approx(static, rel=0.05)
    until = jax.make_jaxpr(
        lambda x: jax.lax.while_loop(lambda c: jnp.sum(c) < 1e3, lambda c: c @ c, x)
    )(jnp.ones((4, 4)))
    with pytest.raises(UnboundedLoop, match="not `counter < bound`"):
        jaxpr_flops(until)


def test_a_cond_counts_its_dearer_branch():
    def either(x):
        return jax.lax.cond(x[0, 0] > 0, lambda: x @ x, lambda: x + 1.0)

    assert _flops(either, (8, 8)) >= 2 * 8**3


def test_cumsum_is_linear_an_fft_is_n_log_n_and_softmax_in_a_scan_is_quadratic():
    def exponent(fn, t: int) -> float:
        return math.log2(_flops(fn, (2 * t, 16)) / _flops(fn, (t, 16)))

    assert exponent(lambda x: jnp.cumsum(x, axis=0), 256) == pytest.approx(1.0)

    def fft_conv(x):
        n = 2 * x.shape[0]
        return jnp.fft.irfft(jnp.fft.rfft(x, n=n, axis=0) ** 2, n=n, axis=0)

    assert 1.0 < exponent(fft_conv, 256) < 1.2

    def softmax_in_scan(x):
        positions = jnp.arange(x.shape[0])

        def attend(carry, t):
            scores = jnp.where(positions <= t, x @ x[t], -1e9)
            return carry, jax.nn.softmax(scores) @ x

        return jax.lax.scan(attend, None, positions)[1]

    assert exponent(softmax_in_scan, 256) > 1.9


# -- ordinary mixers pass ---------------------------------------------------------------------


class DropoutNormFFT(nnx.Module):
    """LayerNorm, a Hyena-style long convolution by FFT (decaying filter) and Dropout with
    its own RNG stream."""

    def __init__(self, d_model, num_heads, *, rngs):
        self.norm = nnx.LayerNorm(d_model, rngs=rngs)
        self.filter = nnx.Param(0.3 * jax.random.normal(rngs.params(), (d_model,)))
        self.gate = nnx.Linear(d_model, d_model, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.out = nnx.Linear(d_model, d_model, rngs=rngs)

    def __call__(self, x):
        u = self.norm(x)
        t = jnp.arange(x.shape[1], dtype=jnp.float32)[:, None]
        h = jnp.cos(t * self.filter[...]) * jnp.exp(-t / 8.0)
        n = 2 * x.shape[1]
        y = jnp.fft.irfft(jnp.fft.rfft(u, n=n, axis=1) * jnp.fft.rfft(h, n=n, axis=0), n=n,
                          axis=1)[:, : x.shape[1]]  # fmt: skip
        return self.out(self.drop(y * jax.nn.sigmoid(self.gate(u))))


class CumsumLinearAttention(nnx.Module):
    """Linear attention by prefix sums of k v^T: linear in T, though XLA's cost analysis
    counts jnp.cumsum (a reduce_window) as quadratic."""

    def __init__(self, d_model, num_heads, *, rngs):
        self.qkv = nnx.Linear(d_model, 3 * d_model, rngs=rngs)

    def __call__(self, x):
        q, k, v = jnp.split(jax.nn.elu(self.qkv(x)) + 1.0, 3, axis=-1)
        state = jnp.cumsum(k[..., :, None] * v[..., None, :], axis=1)
        return jnp.einsum("btk,btkv->btv", q, state) / x.shape[-1]


def test_dropout_layernorm_and_an_fft_long_convolution_pass():
    figures = _passes(DropoutNormFFT, TRAINING)
    assert figures["cost_exponent"] < 1.2  # FFTs at N log N
    assert figures["causality"]["worst_value_ratio"] < 1e-5  # the FFT's rounding, not a leak


def test_cumsum_linear_attention_is_not_called_quadratic():
    assert _passes(CumsumLinearAttention)["cost_exponent"] < 1.1


# DeltaNet and linear attention on every run; the rest, 15-35 s each, with the slow tests.
_QUICK_BASELINES = ("deltanet", "linear_attention")


@pytest.mark.parametrize("name", [
    name if name in _QUICK_BASELINES else pytest.param(name, marks=pytest.mark.slow)
    for name in sorted(set(MIXERS) - {"softmax"})
])  # fmt: skip
def test_the_linear_baselines_pass(name):
    figures = _passes(MIXERS[name], TRAINING)
    assert (
        figures["gradient_error"] < CheckConfig().gradient_tolerance
        and figures["cost_exponent"] < 1.1
    )


def test_softmax_attention_fails_only_its_cost():
    stage, reason = _failure(MIXERS["softmax"], TRAINING)
    assert stage == "cost" and "not sub-quadratic" in reason


def test_the_good_candidate_passes():
    _passes(_load(ROOT / "tests" / "candidates" / "good_gated_delta.py"), TRAINING)


# -- causality --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, body",
    [
        # one position, 9, sees position 10: caught only by a cut at 9
        ("one_position", lambda m, x: _shift(x).at[:, 9].add(x[:, 10] if x.shape[1] > 10 else 0)),
        ("lengths_off_16", lambda m, x: _shift(x) + (_next(x) if x.shape[1] % 16 else 0.0)),
        ("batches_above_2", lambda m, x: _shift(x) + (_next(x) if x.shape[0] > 2 else 0.0)),
        # a huge output at position 0 no longer makes the tolerance for every other position
        ("beside_a_huge_output", lambda m, x: _shift(x).at[:, 0].mul(1e7) + 1e-4 * _next(x)),
        # a gate that starts at zero shows once the parameters move, as training moves them
        ("gated_at_zero", lambda m, x: _shift(x) + m.gate[...] * _next(x)),
    ],
)
def test_a_leak_is_caught(name, body):
    stage, reason = _failure(_mixer(body, gate=0.0))
    assert stage == "causality" and "reads the future" in reason


def test_a_leak_at_the_training_shapes_only_is_caught_there():
    leaky = _mixer(lambda m, x: _shift(x) + (_next(x) if x.shape == (8, 32, 16) else 0.0))
    _passes(leaky)  # nothing tells the checker of the training shape
    stage, reason = _failure(leaky, TRAINING)
    assert stage == "causality" and "at B=8, T=32" in reason


def test_a_leak_while_differentiated_is_caught():
    """Training differentiates the mixer; the checker runs it so too, so a mixer that reads
    the future only then is caught."""
    leaky = _mixer(lambda m, x: _shift(x) + (_next(x) if "Grad" in repr(x) else 0.0))
    assert _failure(leaky)[0] == "causality"


def test_a_gradient_leak_that_cancels_over_channels_is_caught():
    def ghost(m, x):
        ahead = _next(x)[..., :1]
        sign = jnp.zeros(x.shape[-1]).at[0].set(1.0).at[1].set(-1.0)
        return _shift(x) + (ahead - jax.lax.stop_gradient(ahead)) * sign

    stage, reason = _failure(_mixer(ghost))
    assert stage == "causality" and "with respect to later inputs" in reason


# -- gradients --------------------------------------------------------------------------------


@jax.custom_vjp
def _amplify(x):
    return x


_amplify.defvjp(lambda x: (x, None), lambda _, g: (1e4 * g,))


def test_a_backward_pass_scaled_by_1e4_is_caught():
    stage, reason = _failure(_mixer(lambda m, x: _amplify(_shift(x))))
    assert stage == "gradients" and "the input" in reason


def test_one_parameter_with_a_scaled_gradient_is_caught_and_named():
    stage, reason = _failure(_mixer(lambda m, x: _shift(x) * _amplify(m.scale[...]), scale=1.0))
    assert stage == "gradients" and "['scale']" in reason


def test_a_gradient_cut_by_stop_gradient_is_caught():
    stage, _ = _failure(_mixer(lambda m, x: jax.lax.stop_gradient(m.scale[...]) * x, scale=1.0))
    assert stage == "gradients"


# -- parameters and cost ----------------------------------------------------------------------


class Cubic(nnx.Module):
    """d_model^3 / 4 parameters: a third-order tensor."""

    def __init__(self, d_model, num_heads, *, rngs):
        init = nnx.initializers.normal(d_model**-0.5)
        self.tensor = nnx.Param(init(rngs.params(), (d_model // 4, d_model, d_model)))
        self.down = nnx.Linear(d_model, d_model // 4, rngs=rngs)

    def __call__(self, x):
        return jnp.einsum("btr,rde,bte->btd", self.down(x), self.tensor[...], _shift(x))


def test_parameters_are_budgeted_at_two_widths():
    budget, wide = parameter_budget(SMALL, "deltanet")
    assert 3 * budget < wide < 5 * budget  # DeltaNet's parameters: quadratic in the width
    config = dataclasses.replace(SMALL, max_params=budget, max_params_wide=wide)
    stage, reason = _failure(Cubic, config)
    assert stage == "params" and "at twice the width (d_model 32)" in reason
    _passes(Cubic, dataclasses.replace(config, max_params_wide=0))  # one width: it fits


def test_a_softmax_attention_inside_a_scan_is_quadratic():
    def attention(m, x):
        positions = jnp.arange(x.shape[1])

        def attend(carry, t):
            scores = jnp.einsum("bd,bsd->bs", x[:, t], x)
            weights = jax.nn.softmax(jnp.where(positions <= t, scores, -1e9), axis=-1)
            return carry, jnp.einsum("bs,bsd->bd", weights, x)

        return jnp.swapaxes(jax.lax.scan(attend, None, positions)[1], 0, 1)

    stage, reason = _failure(_mixer(attention))
    assert stage == "cost" and "not sub-quadratic" in reason


def test_a_while_loop_without_a_constant_trip_count_is_refused():
    def doubling(m, x):
        # doubles up to a bound that depends on the data (here, always 20 doublings)
        bound = 1e6 + jnp.tanh(jax.lax.stop_gradient(jnp.sum(x)))
        rounds = jax.lax.while_loop(lambda s: s[1] < bound, lambda s: (s[0] + 1, 2 * s[1]),
                                    (0, 1.0))[0]  # fmt: skip
        return _shift(x) * rounds

    stage, reason = _failure(_mixer(doubling))
    assert stage == "cost" and "while loop" in reason


def test_the_clock_refuses_work_the_flop_count_cannot_see(monkeypatch):
    # a fake clock: 4x the time at twice the length
    monkeypatch.setattr(checker, "_forward_seconds", lambda m, c: {64: 0.01, 128: 0.05})
    stage, reason = _failure(_mixer(lambda m, x: _shift(x)))
    assert stage == "cost" and "time grows as T^2.32" in reason


# -- what the checker is told -----------------------------------------------------------------


def test_causality_shapes_cover_every_batch_size_length_and_the_training_shape():
    shapes = checker._causal_shapes(TRAINING)
    assert (8, 32) in shapes
    assert {b for b, _ in shapes} >= {1, 2, 3, 8}
    assert {t for _, t in shapes} >= {11, 16, 32}
    assert all(b >= 1 for b, _ in shapes)  # the held-out remainder of 0 is no batch


# -- structure --------------------------------------------------------------------------------


def _exec_mixer(source: str):
    namespace: dict = {}
    exec(compile(source, "candidate.py", "exec"), namespace)  # test-only: our own source
    return namespace["Mixer"]


def test_the_program_fingerprint_ignores_names_and_sees_changes():
    from asi_jax.tasks.linear_attention import grammar

    source = grammar.render(grammar.BASELINE_DESIGNS["deltanet"])
    renamed = (source.replace("l2_normalize", "unit_norm").replace("self.out", "self.o_proj")
               .replace("norm_scale", "gain").replace("dk", "head_dim"))  # fmt: skip
    changed = source.replace("1e-6", "1e-5")
    op = source.replace("jax.nn.silu(self.conv_v", "jax.nn.gelu(self.conv_v")
    prints = [checker.jaxpr_fingerprint(_exec_mixer(s), SMALL)
              for s in (source, renamed, changed, op)]  # fmt: skip
    assert prints[0] == prints[1]
    assert len(set(prints)) == 3


def test_the_report_holds_the_program_fingerprint():
    mixer = _mixer(lambda m, x: _shift(x))
    report = check_mixer(mixer, SMALL)
    assert report["ok"] and report["structure"] == {
        "jaxpr": checker.jaxpr_fingerprint(mixer, SMALL)}  # fmt: skip
    assert check_mixer(_mixer(lambda m, x: x[:, :1]), SMALL)["structure"] == {}  # shapes fail
