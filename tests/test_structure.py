"""AST fingerprints: what a rename or a reformat leaves alone, and what a real change moves."""

import pytest

from asi_jax.candidates.structure import ast_fingerprint
from asi_jax.tasks.linear_attention import grammar

SOURCE = grammar.render(grammar.BASELINE_DESIGNS["deltanet"], docstring="DeltaNet.")


def _renamed(source: str) -> str:
    """The same program, its defined names, comments, docstring, annotations and layout
    changed (the contract's `rngs` keyword kept)."""
    out = (source.replace("l2_normalize", "unit_norm").replace("self.out", "self.o_proj")
           .replace("norm_scale", "gain").replace("dk", "head_dim")
           .replace("num_heads", "heads").replace("class Mixer", "class Mixer")
           .replace("DeltaNet.", "Another docstring.").replace("-> jax.Array", "")
           .replace("o = o0", "o = o0  # the only path"))  # fmt: skip
    return out.replace("    ", "  ") + "\n# trailing comment\n"


def test_names_comments_and_layout_do_not_change_the_fingerprint():
    variant = _renamed(SOURCE)
    assert variant != SOURCE and "unit_norm" in variant and "gain" in variant
    assert ast_fingerprint(variant) == ast_fingerprint(SOURCE)


@pytest.mark.parametrize(
    "old, new",
    [
        ("1e-6", "1e-5"),  # a constant
        ("jax.nn.silu(self.conv_v", "jax.nn.gelu(self.conv_v"),  # one op
        ("use_bias=False, rngs=rngs)\n        self.v", "use_bias=True, rngs=rngs)\n        self.v"),
        ("import jax.numpy as jnp", "import jax.numpy as np"),  # imports are kept
    ],
    ids=["constant", "op", "keyword", "import"],
)
def test_a_real_change_changes_the_fingerprint(old, new):
    assert old in SOURCE
    assert ast_fingerprint(SOURCE.replace(old, new, 1)) != ast_fingerprint(SOURCE)


def test_source_that_does_not_parse_raises():
    with pytest.raises(SyntaxError):
        ast_fingerprint("def f(:\n")
