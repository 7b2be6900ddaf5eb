"""The static policy: each way out it knows is refused with its line and construct, the
ordinary code a mixer is made of is accepted, the mechanisms it refuses are real, and a refused
candidate never reaches a worker."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from asi_jax.candidates.engineer import EngineerConfig, run_candidate
from asi_jax.candidates.policy import check_source
from asi_jax.tasks.linear_attention.contract import ALLOWED_IMPORTS, ALLOWED_MODULES, MIXER

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "candidates"
MARK = "# <-"  # marks the line a violation must name

HEAD = """\
import functools
import typing

import jax
import jax.numpy as jnp
from flax import nnx

import pallas_kernels
"""
FLAX_HEAD = "import flax.nnx\nfrom flax import nnx\n"


def mixer(init: str = "", call: str = "", *, before: str = "", methods: str = "",
          after: str = "", head: str = HEAD) -> str:  # fmt: skip
    """A working mixer with `init` and `call` added to its methods, `before` and `after` it at
    module level, and `methods` in its class."""

    def block(code: str, depth: int) -> str:
        return textwrap.indent(textwrap.dedent(code).strip("\n"), " " * depth) + "\n"

    source = head + "\n" + (block(before, 0) if before.strip() else "")
    source += "\nclass Mixer(nnx.Module):\n    def __init__(self, d_model, num_heads, *, rngs):\n"
    source += "        self.proj = nnx.Linear(d_model, d_model, rngs=rngs)\n"
    source += block(init, 8) if init.strip() else ""
    source += "\n" + (block(methods, 4) + "\n" if methods.strip() else "")
    source += "    def __call__(self, x):\n" + (block(call, 8) if call.strip() else "")
    source += "        return self.proj(x)\n"
    return source + ("\n" + block(after, 0) if after.strip() else "")


def marked_line(source: str) -> int:
    lines = [i for i, line in enumerate(source.splitlines(), 1) if MARK in line]
    assert len(lines) == 1, "mark exactly one line"
    return lines[0]


# (name, source with the offending line marked, the construct named there)
# fmt: off
REFUSED = [
    # modules outside the allowed set, however they are reached
    ("typing_sys", mixer("m = typing.sys.modules  # <-"), "typing.sys"),
    ("jax_version_os", mixer("jax.version.os.system('id')  # <-"), "jax.version"),
    ("nnx_graph_builtins", mixer("f = nnx.graph.builtins.open  # <-"), "nnx.graph"),
    ("pallas_benchmark", mixer("t = pallas_kernels.benchmark.time  # <-"),
     "pallas_kernels.benchmark"),
    ("einops_internals", mixer("e = einops.einops  # <-", head=HEAD + "import einops\n"),
     "einops.einops"),
    ("initializers_typing_sys", mixer("s = nnx.initializers.tp.sys  # <-"),
     "nnx.initializers.tp.sys"),
    ("flax_linen", mixer("d = flax.linen.Dense  # <-", head=FLAX_HEAD), "flax.linen"),
    ("flax_nnx_bridge", mixer("b = flax.nnx.bridge  # <-", head=FLAX_HEAD), "flax.nnx.bridge"),
    ("typing_io", mixer("t = typing.io  # <-"), "typing.io"),
    ("private_module", mixer("c = jax._src  # <-"), "._src"),
    ("no_such_attribute", mixer(call="y = jnp.not_a_function(x)  # <-"), "jnp.not_a_function"),
    ("module_state", mixer("pallas_kernels.OPS.clear()  # <-"), "pallas_kernels.OPS"),
    ("typing_state", mixer("typing.EXCLUDED_ATTRIBUTES.append('x')  # <-"),
     "typing.EXCLUDED_ATTRIBUTES"),
    ("method_through_class", mixer("f = nnx.Module.eval  # <-"), "nnx.Module.eval"),
    ("past_a_function", mixer("rule = jax.nn.relu.jvp  # <-"), "jax.nn.relu.jvp"),
    # imports, of modules and of names
    ("import_os", "import os  # <-\n" + mixer(), "import os"),
    ("import_sqlite3", "import _sqlite3  # <-\n" + mixer(), "import _sqlite3"),
    ("import_stages_as", "import jax.stages as s  # <-\n" + mixer(), "import jax.stages"),
    ("import_flax", "import flax  # <-\n" + mixer(), "import flax"),
    ("from_jax_stages", "from jax import stages  # <-\n" + mixer(), "from jax import stages"),
    ("from_typing_sys", "from typing import sys  # <-\n" + mixer(), "from typing import sys"),
    ("from_jax_pure_callback", "from jax import pure_callback  # <-\n" + mixer(),
     "from jax import pure_callback"),
    ("from_jnp_load", "from jax.numpy import load  # <-\n" + mixer(),
     "from jax.numpy import load"),
    ("from_flax_linen", "from flax import linen  # <-\n" + mixer(), "from flax import linen"),
    ("from_register", "from jax.tree_util import register_pytree_node  # <-\n" + mixer(),
     "from jax.tree_util import register_pytree_node"),
    ("from_private", "from jax import _src  # <-\n" + mixer(), "from jax import _src"),
    ("star", "from jax.numpy import *  # <-\n" + mixer(), "from jax.numpy import *"),
    ("relative", "from . import helpers  # <-\n" + mixer(), "relative import"),
    ("other_future", "from __future__ import barry_as_FLUFL  # <-\n" + mixer(),
     "from __future__ import barry_as_FLUFL"),
    # a module is never a value: no alias, container, argument or default carries one
    ("alias_module", mixer(before="_np = jnp  # <-"), "jnp"),
    ("module_in_list", mixer(call="ms = [jnp, jax]  # <-"), "jnp"),
    ("module_argument", mixer(call="f = functools.partial(getter, typing)  # <-",
                              before="def getter(m):\n    return m"), "typing"),
    ("module_default", mixer(before="def f(m=typing):  # <-\n    return m"), "typing"),
    ("submodule_value", mixer(before="fft = jnp.fft  # <-"), "jnp.fft"),
    # patching what the checker shares
    ("patch_module", mixer(before="jnp.max = lambda *a, **k: 0.0  # <-"), "assignment to jnp.*"),
    ("patch_alias", mixer(before="_np = jnp\n_np.max = lambda *a, **k: 0.0  # <-"),
     "assignment to _np.*"),
    ("patch_from_import", mixer(before="from jax.numpy import linalg\nlinalg.norm = abs  # <-"),
     "assignment to linalg.*"),
    ("patch_class_alias", mixer(before="E = nnx.Embed\nE.attend = abs  # <-"),
     "assignment to E.*"),
    ("patch_lowered", mixer(before="L = jax.stages.Lowered  # <-\nL.cost_analysis = dict"),
     "jax.stages"),
    ("patch_del", mixer(before="del jnp.max  # <-"), "assignment to jnp.*"),
    ("patch_augmented", mixer(before="nnx.Linear.x += 1  # <-"), "assignment to nnx.*"),
    ("patch_item", mixer(before="pallas_kernels.OPS['gla'] = abs  # <-"),
     "assignment to pallas_kernels.*"),
    ("patch_for_target", mixer(before="for jnp.max in [abs]:  # <-\n    pass"),
     "assignment to jnp.*"),
    ("patch_parameter", mixer(before="def f(obj):\n    obj.attend = abs  # <-"),
     "assignment to obj.attend"),
    ("rngs_state", mixer("rngs.default.key.value = jnp.zeros(())  # <-"),
     "assignment to rngs.default.key.value"),
    # only __init__ and __call__ own self; other methods run on any object passed as self
    ("method_sets_self", mixer(methods="def install(self, f):\n    self.attend = f  # <-"),
     "assignment to self.attend"),
    ("classmethod_sets_cls",
     mixer(methods="@classmethod\ndef install(cls, f):\n    cls.attend = f  # <-"),
     "assignment to cls.attend"),
    ("function_sets_self", mixer(before="def install(self, f):\n    self.attend = f  # <-"),
     "assignment to self.attend"),
    ("method_reads_private", mixer(methods="def state(self):\n    return self._pytree  # <-"),
     "._pytree"),
    ("method_reads_forbidden", mixer(methods="def cfg(self):\n    return self.config  # <-"),
     ".config"),
    ("own_rebound", mixer("self = nnx.Embed\nself.attend = abs  # <-"), "assignment to self.*"),
    ("decorated_init",
     mixer().replace("    def __init__", "    @(lambda f: f)  # <-\n    def __init__"),
     "@lambda f: f"),
    ("impure_decorator",
     mixer(before="deco = jax.jit\ndeco = lambda f: f").replace(
         "    def __init__", "    @deco  # <-\n    def __init__"),
     "@deco"),
    ("item_on_self", mixer("self[0] = 1  # <-"), "assignment to self[0]"),
    ("past_an_own_instance", mixer("self.lin = nnx.Linear(2, 2, rngs=rngs)\n"
                                   "self.lin.param_dtype.dtype = 1  # <-"),
     "assignment to self.lin.param_dtype.dtype"),
    ("value_of_a_class", mixer("self.kind = nnx.Param\nself.kind.value = property(abs)  # <-"),
     "assignment to self.kind.value"),
    ("value_of_a_returned_class",
     mixer("self.kind = Lin()\nself.kind.value = 1  # <-",
           before="Lin = nnx.Linear\nLin = lambda: nnx.Param"),
     "assignment to self.kind.value"),
    ("sow_on_self", mixer("self.sow(lambda v: nnx.Param, 'kind', 0)  # <-"), ".sow"),
    ("set_attributes", mixer("self.set_attributes(proj=nnx.Embed)  # <-"), ".set_attributes"),
    ("item_in_parameter", mixer(before="def fill(d):\n    d['k'] = 1  # <-"),
     "assignment to d['k']"),
    ("item_in_rebuilt_dict", mixer(call="d = dict()\nd['k'] = 1  # <-",
                                   before="dict = lambda: pallas_kernels.ops.__dict__"),
     "assignment to d['k']"),
    # strings that become code
    ("string_class_annotation", mixer(methods="cache: \"jax.numpy.save('/tmp/x', 1)\"  # <-"),
     "annotation jax.numpy.save('/tmp/x', 1)"),
    ("string_annotation_under_future",
     mixer(methods="cache: print('evaluated by flax') or jax.Array  # <-",
           head="from __future__ import annotations\n" + HEAD),
     "annotation print('evaluated by flax') or jax.Array"),
    ("unparsable_annotation", mixer(methods='cache: "jax Array"  # <-'), "annotation 'jax Array'"),
    ("annotation_alias",
     mixer(before='Alias = typing.List["jax.Array"]\ndef f(x: Alias):  # <-\n    return x'),
     "annotation Alias"),
    ("own_attribute_annotation",
     mixer(methods="note = 'open(0)'\ncache: 'Mixer.note'  # <-",
           head="from __future__ import annotations\n" + HEAD),
     "annotation Mixer.note"),
    ("alias_of_a_string", mixer(before="A = 'open(0)'\ndef f(x: A):  # <-\n    return x"),
     "annotation A"),
    ("nested_string_annotation",
     mixer(before='def f(x: typing.List["typing.sys"]):  # <-\n    return x'), "typing.sys"),
    ("get_type_hints", mixer("typing.get_type_hints(Mixer)  # <-"), ".get_type_hints"),
    ("forward_ref", mixer("r = typing.ForwardRef('x')  # <-"), ".ForwardRef"),
    ("format_lookup", mixer("tag = '{0.__init__}'.format(nnx.Linear)  # <-"), ".format"),
    ("format_of_variable", mixer("t = '{0' + '.x}'\ntag = t.format(rngs)  # <-"), ".format"),
    ("str_format", mixer("tag = str.format('{}', 1)  # <-"), ".format"),
    ("format_map", mixer("tag = '{a.b}'.format_map({})  # <-"), ".format_map"),
    # the compiler, callbacks, process-wide state
    ("compiler_options", mixer(call="f = jax.jit(abs, compiler_options={})  # <-"),
     "compiler_options="),
    ("splat_unknown_keys", mixer(call="kw = dict()\nf = jax.jit(abs, **kw)  # <-"), "**"),
    ("splat_forbidden_key", mixer(call="f = jax.jit(abs, **{'compiler_options': {}})  # <-"),
     "**"),
    ("lower", mixer(call="lowered = jax.jit(abs).lower(x)  # <-"), ".lower"),
    ("cost_analysis", mixer(call="c = jax.jit(abs).trace(x).cost_analysis()  # <-"),
     ".cost_analysis"),
    ("pure_callback", mixer(call="y = jax.pure_callback(abs, x, x)  # <-"), ".pure_callback"),
    ("debug_print", mixer(call="jax.debug.print('{}', x)  # <-"), ".debug"),
    ("config_update", mixer("jax.config.update('jax_enable_x64', True)  # <-"), ".config"),
    ("set_global", mixer("jax.enable_x64.set_global(True)  # <-"), ".set_global"),
    ("pytree_registration", mixer("jax.tree_util.register_pytree_node(float, f, g)  # <-"),
     ".register_pytree_node"),
    ("primitive_rule", mixer("jax.lax.add_p.def_impl(abs)  # <-"), ".def_impl"),
    ("defjvp_of_library", mixer("jax.nn.relu.defjvp(abs)  # <-"), ".defjvp"),
    ("defjvp_through_alias", mixer("r = jax.nn.relu\nr.defjvp(abs)  # <-"), ".defjvp"),
    ("update_wrapper", mixer("functools.update_wrapper(nnx.Embed, abs)  # <-"),
     ".update_wrapper"),
    ("singledispatch", mixer("d = functools.singledispatch(abs)  # <-"), ".singledispatch"),
    ("live_arrays", mixer(call="arrays = jax.live_arrays()  # <-"), ".live_arrays"),
    ("graph_mode", mixer("nnx.set_graph_mode(False)  # <-"), ".set_graph_mode"),
    ("update_context", mixer("c = nnx.current_update_context('t')  # <-"),
     ".current_update_context"),
    ("display", mixer(call="nnx.display(x)  # <-"), ".display"),
    # the interpreter and its frames
    ("eval", mixer("v = eval('1')  # <-"), "eval"),
    ("open", mixer("f = open('/etc/passwd')  # <-"), "open"),
    ("type", mixer("t = type(self)  # <-"), "type"),
    ("system_exit", mixer("raise SystemExit(0)  # <-"), "SystemExit"),
    ("base_exception", mixer(call="try:\n    pass\nexcept BaseException:  # <-\n    pass"),
     "BaseException"),
    ("dunder_attribute", mixer("c = rngs.__class__  # <-"), ".__class__"),
    ("dunder_name", mixer("b = __builtins__  # <-"), "__builtins__"),
    ("dunder_store", mixer(before="__name__ = 'x'  # <-"), "__name__"),
    ("all_in_function", mixer(before="def f():\n    __all__ = []  # <-"), "__all__"),
    ("super_with_arguments", mixer("super(nnx.Module, rngs).__init__()  # <-"),
     "super(nnx.Module, rngs)"),
    ("frame", mixer(call="g = (i for i in [1])\nf = g.gi_frame  # <-"), ".gi_frame"),
    ("frame_back", mixer(call="f = x.f_back  # <-"), ".f_back"),
    ("private_of_another", mixer(call="t = x._trace  # <-"), "._trace"),
    # classes that could pass for what the checker expects
    ("array_subclass", mixer(before="class Fake(jax.Array):  # <-\n    pass"),
     "class Fake(jax.Array)"),
    ("builtin_subclass", mixer(before="class Fake(float):  # <-\n    pass"), "class Fake(float)"),
    ("impure_base", mixer(before="B = nnx.Module\nB = float\nclass Fake(B):  # <-\n    pass"),
     "class Fake(B)"),
    ("metaclass", mixer(before="class M(nnx.Module, metaclass=type):  # <-\n    pass"),
     "class M(metaclass=...)"),
    ("dunder_method", mixer(methods="def __eq__(self, other):  # <-\n    return True"),
     "def __eq__"),
    ("jax_array_hook", mixer(methods="def __jax_array__(self):  # <-\n    return 0"),
     "def __jax_array__"),
    # statements a mixer has no use for
    ("while", mixer(call="while True:  # <-\n    pass"), "while"),
    ("global", mixer(before="def f():\n    global g  # <-\n    g = 1"), "global"),
    ("yield", mixer(before="def g():\n    with jax.disable_jit():\n        yield 1  # <-"),
     "yield"),
    ("async", mixer(before="async def g():  # <-\n    pass"), "async"),
    ("match", mixer(call="match x:  # <-\n    case object(shape=s):\n        pass"), "match"),
]
# fmt: on


@pytest.mark.parametrize(("source", "construct"), [c[1:] for c in REFUSED],
                         ids=[c[0] for c in REFUSED])  # fmt: skip
def test_each_mechanism_is_refused_naming_its_line_and_construct(source, construct):
    found = [(v.line, v.construct) for v in check_source(source, MIXER)]
    assert (marked_line(source), construct) in found, found


# fmt: off
ACCEPTED = {
    "future_all_and_main": mixer(
        head="from __future__ import annotations\n\n" + HEAD,
        before='__all__ = ["Mixer"]',
        after='if __name__ == "__main__":\n    print(Mixer(8, 2, rngs=nnx.Rngs(0)))',
    ),
    "own_load_save_config_and_private": mixer(
        "self.load = nnx.Linear(d_model, num_heads, rngs=rngs)\n"
        "self.save = nnx.Linear(d_model, d_model, rngs=rngs)\n"
        "self._eps = 1e-6\nself.config = {'width': d_model}",
        "x = self.save(x) * jax.nn.sigmoid(self.load(x)).mean() + self._eps",
    ),
    "imports_by_name": mixer(
        "self.heads = num_heads",
        "b, t, d = x.shape\n"
        "q = einops.rearrange(x, 'b t (h k) -> b t h k', h=self.heads)\n"
        "o, _ = simple_gla(q, q, q, jnp.zeros((b, t, self.heads)))\n"
        "x = einops.rearrange(o, 'b t h k -> b t (h k)')\n"
        "x = fft.irfft(fft.rfft(x, axis=1), n=t, axis=1) + np2.zeros(())\n"
        "x = x + random.normal(random.key(0), x.shape)",
        head=HEAD + "import einops\nfrom jax import numpy as np2, random\n"
        "from jax.numpy import fft\n\nfrom pallas_kernels.ops import simple_gla\n",
    ),
    "every_allowed_module": mixer(
        "self.gain = nnx.Param(nnx.initializers.ones_init()(rngs.params(), (d_model,)))\n"
        "self.w = nnx.Param(jax.nn.initializers.lecun_normal()(rngs.params(), (4, d_model)))",
        "x = jax.scipy.signal.fftconvolve(x, x)[:, : x.shape[1]] * self.gain[...]\n"
        "x = x + jax.scipy.special.erf(x) + jax.lax.linalg.qr(x)[0] + jnp.linalg.norm(x)\n"
        "x = jax.tree.map(jnp.tanh, x) + jax.tree_util.tree_map(jnp.tanh, x)\n"
        "x = x * math.pi + jax.random.normal(jax.random.PRNGKey(0), x.shape)",
        head=HEAD + "".join(f"import {m}\n" for m in sorted(ALLOWED_MODULES)),
    ),
    "layers_and_state": mixer(
        "self.norm = nnx.LayerNorm(d_model, rngs=rngs)\n"
        "self.dropout = nnx.Dropout(0.1, rngs=rngs)\n"
        "self.count = nnx.Variable(jnp.zeros((), jnp.int32))\n"
        "self.blocks = [nnx.Linear(d_model, d_model, rngs=rngs) for _ in range(2)]\n"
        "self.norm.scale[...] = jnp.ones((d_model,))\nself.proj.kernel[...] *= 0.5\n"
        "self.proj.bias = nnx.Param(jnp.zeros((d_model,)))",
        "self.count.value += 1\nself.count[...] = self.count[...] + 1\n"
        "h = self.dropout(self.norm(x))\nfor block in self.blocks:\n    h = block(h)\n"
        "x = x + h",
    ),
    "helpers_scan_and_custom_vjp": mixer(
        "self.decay = 0.9",
        "_, ys = jax.lax.scan(self.step, jnp.zeros_like(x[:, 0]), x.swapaxes(0, 1))\n"
        "x = clip_gradient(ys.swapaxes(0, 1)) + self.helper(x)\n"
        "cache = {}\ncache['y'] = x\nparts = [x]\nparts[0] = x * 2\n"
        "x = cache['y'] + parts[0]",
        before="@jax.custom_vjp\ndef clip_gradient(x):\n    return x\n\n"
        "def clip_forward(x):\n    return x, None\n\n"
        "def clip_backward(_, g):\n    return (jnp.clip(g, -1.0, 1.0),)\n\n"
        "clip_gradient.defvjp(clip_forward, clip_backward)\n\n"
        "@functools.partial(jax.jit, static_argnums=(1,))\ndef chunked(x, size):\n"
        "    return x.reshape(x.shape[0], -1, size, x.shape[-1])",
        methods="@staticmethod\ndef step(carry, x_t):\n    carry = 0.9 * carry + x_t\n"
        "    return carry, carry\n\n"
        "@classmethod\ndef create(cls, d_model: int) -> 'Mixer':\n"
        "    return cls(d_model, 1, rngs=nnx.Rngs(0))\n\n"
        "def helper(self, x):\n    return self.proj(x) * self.decay + self.step(x, x)[0]",
    ),
    "annotations_and_formatting": mixer(
        "self.base = Base(d_model)\nself.base.width = d_model\nsuper().__init__()",
        "print(f'{x.shape!r:>10}', '{:.3f} {}'.format(1.0, 'x'), '%s' % 1)\n"
        "x = pick(self.base(x)) + jnp.asarray(1.0, dtype=jnp.float32)\n"
        "assert isinstance(x, jax.Array)",
        head=HEAD + "from typing import Literal, Optional\n",
        before="class State(typing.NamedTuple):\n    h: jax.Array\n"
        "    n: 'jax.Array | None'\n\n"
        "def pick(x: Optional[jax.Array], mode: Literal['a b', 'c'] = 'c') -> 'jax.Array':\n"
        "    return x\n\n"
        "class Base(nnx.Module):\n    width: int\n\n"
        "    def __init__(self, width: int):\n        self.width = width\n\n"
        "    def __call__(self, x: jax.Array) -> jax.Array:\n        return x",
    ),
    "type_aliases": mixer(
        before="Shape = tuple[int, ...]\nMaybe = jax.Array | None\n"
        "Mode = typing.Literal['chunk', 'scan steps']\nShapes = list[Shape]\n\n"
        "def f(s: Shape, x: Maybe, m: Mode, ss: Shapes) -> Shape:\n    return s",
    ),
    "subclass_of_an_nnx_layer": mixer(
        "self.gate = Gate(d_model, rngs=rngs)",
        "x = x * self.gate(x)",
        before="class Gate(nnx.Linear):\n"
        "    def __init__(self, d: int, *, rngs: nnx.Rngs):\n"
        "        super(Gate, self).__init__(d, d, rngs=rngs)\n\n"
        "    def __call__(self, x: jax.Array) -> jax.Array:\n"
        "        return jax.nn.sigmoid(super().__call__(x))",
    ),
}
# fmt: on


@pytest.mark.parametrize("source", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_ordinary_code_is_accepted(source):
    assert check_source(source, MIXER) == []


OK_FILES = sorted(CORPUS.glob("ok_*.py"))


@pytest.mark.parametrize("path", [CORPUS / "good_gated_delta.py", *OK_FILES],
                         ids=lambda p: p.stem)  # fmt: skip
def test_the_accepted_corpus_passes(path):
    assert check_source(path.read_text(), MIXER) == []


def test_the_allowed_modules_are_the_contract_and_numeric_submodules():
    assert ALLOWED_IMPORTS <= ALLOWED_MODULES
    assert {"einops", "flax.nnx", "pallas_kernels"} <= ALLOWED_IMPORTS
    assert not {"jax.stages", "jax.version", "jax.experimental", "flax.nnx.graph",
                "pallas_kernels.benchmark"} & ALLOWED_MODULES  # fmt: skip


def test_pathological_sources_are_violations_not_errors():
    deep = mixer(before="x = jax" + ".a" * 2000)
    assert [v.construct for v in check_source(deep, MIXER)] in (["nesting"], ["syntax"])
    assert [v.construct for v in check_source("x = 1\0\n", MIXER)] == ["syntax"]
    assert [v.construct for v in check_source("import math\n", MIXER)] == ["class Mixer"]


POLICY_CORPUS = sorted(CORPUS.glob("policy_*.py"))


@pytest.mark.parametrize("path", POLICY_CORPUS, ids=lambda p: p.stem)
def test_a_refused_candidate_never_reaches_a_worker(path, tmp_path):
    """The effect of a refusal: no candidate file is written for a worker to run, and none of
    the corpus's targets outside the folder appear."""
    before = {p: p.exists() for p in Path("/tmp").glob("asi_jax_owned*")}
    result = run_candidate(path.read_text(), EngineerConfig(), tmp_path)
    pattern = re.match(r"# expect: policy: (.+)", path.read_text().splitlines()[0]).group(1)
    assert not result.ok and result.stage == "policy"
    assert re.search(pattern, result.reason), result.reason
    assert not list(tmp_path.rglob("candidate.py"))
    assert {p: p.exists() for p in Path("/tmp").glob("asi_jax_owned*")} == before


# Run without the policy, in a fresh interpreter: each mechanism does what the policy says.
_REAL = {
    "flax_evaluates_string_annotations": (
        "from __future__ import annotations\nimport jax\nfrom flax import nnx\n"
        "class Mixer(nnx.Module):\n    cache: print('EFFECT') or jax.Array\n",
        "EFFECT",
    ),
    "a_method_through_its_class_patches_flax": (
        "from flax import nnx\nclass Mixer(nnx.Module):\n"
        "    def install(self, attend):\n        self.attend = attend\n"
        "Mixer.install(nnx.Embed, lambda self, h: 'EFFECT')\n"
        "print(nnx.Embed(2, 2, rngs=nnx.Rngs(0)).attend(None))\n",
        "EFFECT",
    ),
    "typing_reaches_builtins": (
        "import typing\nprint(typing.sys.modules['builtins'].eval('\"EFF\" + \"ECT\"'))\n",
        "EFFECT",
    ),
    "relu_derivative_redefined_for_everyone": (
        "import jax\njax.nn.relu.defjvp(lambda p, t: (jax.nn.relu(p[0]), t[0] * 0.0))\n"
        "print('EFFECT' if jax.grad(jax.nn.relu)(1.0) == 0.0 else 'none')\n",
        "EFFECT",
    ),
}


@pytest.mark.parametrize("name", sorted(_REAL))
def test_the_refused_mechanisms_are_real(name):
    source, effect = _REAL[name]
    done = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert effect in done.stdout
    assert check_source(source + mixer(head="from flax import nnx\n"), MIXER) != []


def test_the_policy_initialises_no_jax_backend():
    """It follows chains on the real modules, importing them, but leaves the accelerators to
    the workers, as the controller must."""
    call = "x = jax.scipy.signal.fftconvolve(x, nnx.initializers.ones_init()(0, (2,)))"
    source = mixer(call=call, head=HEAD + "import einops\nimport jax.scipy.signal\n")
    script = (
        "import sys\nfrom jax._src import xla_bridge\n"
        "from asi_jax.candidates.policy import check_source\n"
        "from asi_jax.tasks.linear_attention.contract import MIXER\n"
        "print(check_source(sys.stdin.read(), MIXER), xla_bridge.backends_are_initialized())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], input=source, capture_output=True,
                          text=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["[]", "False"]
