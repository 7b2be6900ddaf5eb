"""Search/replace edits: what applies, and the reason a model reads when it does not."""

import pytest

from asi_jax.agents.edits import EditError, apply_edits, parse_edits

SOURCE = """import jax


class Mixer:
    def __call__(self, x):
        y = jax.nn.silu(x)
        return y

    def other(self, x):
        y = jax.nn.silu(x)
        return y
"""


def _block(search: str, replace: str) -> str:
    return f"<<<<<<< SEARCH\n{search}\n=======\n{replace}\n>>>>>>> REPLACE\n"


def test_blocks_apply_in_order_amid_prose_and_fences():
    reply = ("I will change the activation.\n```python\n"
             + _block("    def __call__(self, x):\n        y = jax.nn.silu(x)",
                      "    def __call__(self, x):\n        y = jax.nn.gelu(x)")
             + "```\nand then the import:\n"
             + _block("import jax", "import jax\nimport jax.numpy as jnp"))  # fmt: skip
    out = apply_edits(SOURCE, reply)
    assert out.startswith("import jax\nimport jax.numpy as jnp\n")
    assert out.count("gelu") == 1 and out.count("silu") == 1
    assert out.endswith("        return y\n")


def test_trailing_whitespace_is_ignored_and_a_block_may_delete():
    reply = _block("    def other(self, x):   \n        y = jax.nn.silu(x)\n        return y", "")
    assert "other" not in apply_edits(SOURCE, reply)


def test_later_blocks_see_the_earlier_blocks_result():
    reply = _block("import jax", "import jax as j") + _block("import jax as j", "import jax")
    with pytest.raises(EditError, match="unchanged"):
        apply_edits(SOURCE, reply)
    reply = _block("import jax", "import numpy") + _block("import jax", "import os")
    with pytest.raises(EditError, match=r"block 2.s SEARCH .*\(as the earlier blocks left it\)"):
        apply_edits(SOURCE, reply)


@pytest.mark.parametrize(
    "reply, reason",
    [
        ("Here is a better mixer: use gelu.", "no edit blocks"),
        ("", "no edit blocks"),
        (_block("import numpy", "import jax"),
         r"block 1's SEARCH text \(starting 'import numpy'\) is not in the file"),
        (_block("import jax", "import jax") + _block("        y = jax.nn.silu(x)", "y = x"),
         r"block 2's SEARCH text is found 2 times .*lines 6, 10.*quote more lines"),
        (_block("def __call__(self, x):", "def f(self, x):"),
         r"matches at line 5 if indentation is ignored"),
        (_block("import jax", "import jax"), "unchanged"),
        (_block("", "import os"), "block 1's SEARCH is empty"),
        ("<<<<<<< SEARCH\nimport jax\n>>>>>>> REPLACE\n", "block 1 has no ======= line"),
        ("<<<<<<< SEARCH\nimport jax\n=======\nimport os\n", "block 1 does not end with"),
        (_block("import jax", "import os") + "=======\nx\n>>>>>>> REPLACE\n",
         "block 2: a >>>>>>> REPLACE line without <<<<<<< SEARCH"),
    ],
    ids=["prose", "empty", "not-found", "twice", "indentation", "no-op", "empty-search",
         "no-divider", "no-end", "stray-replace"],
)  # fmt: skip
def test_edits_that_do_not_apply_say_why(reply, reason):
    with pytest.raises(EditError, match=reason):
        apply_edits(SOURCE, reply)


def test_parse_keeps_the_lines_of_each_block():
    (edit,) = parse_edits("x\n" + _block("a\n  b", "c") + "y")
    assert (edit.search, edit.replace) == (["a", "  b"], ["c"])
