"""Fuzzing the globals classifier through the reader: whatever a pickle names, however it
reaches the name, pttui offers for allow-listing only what is on its curated list.

The suite runs a few hundred cases; ``PTTUI_FUZZ_EXAMPLES=100000`` runs more (the count
quoted in the notes), e.g.
``PTTUI_FUZZ_EXAMPLES=100000 .venv/bin/python -m pytest tests/hostile/test_globals_fuzz.py``.
"""

from __future__ import annotations

import os
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from craft import P, storage, tensor, torch_zip, zip_bytes  # noqa: E402

from pttui.core.read.pickle import globalscan  # noqa: E402
from pttui.core.base.meta import ReadError  # noqa: E402
from pttui.core.read.reader import open_checkpoint  # noqa: E402
from tests.helpers import session_temp_folder  # noqa: E402

EXAMPLES = int(os.environ.get("PTTUI_FUZZ_EXAMPLES", "300"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))
_DIR = session_temp_folder("pttui-globals-fuzz-")

_IDENT = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
_KNOWN = sorted(globalscan.SAFE_TO_ALLOW | globalscan.ALLOWED) + [
    "torch.utils.collect_env.run", "torch.hub.load", "copyreg._reconstructor",
    "numpy.dtypes.Float64DType", "numpy.dtypes.Float64DType.__init__", "numpy.dtypes.",
    "posix.system", "builtins.eval", "__torch__.Net", "torch.jit._pickle.build_intlist"]


@st.composite
def global_names(draw) -> tuple[str, str]:
    """(module, name): a known name, a known name bent, or a made-up dotted one."""
    kind = draw(st.sampled_from(["known", "bent", "made-up", "torch", "text"]))
    if kind in ("known", "bent"):
        module, _, name = draw(st.sampled_from(_KNOWN)).rpartition(".")
        if kind == "bent":  # a suffix, a prefix, a moved dot, a case change
            how = draw(st.sampled_from(["suffix", "prefix", "dot", "case"]))
            if how == "suffix":
                name += draw(st.sampled_from([".__globals__", "X", ".run", "_"]))
            elif how == "prefix":
                module = draw(_IDENT) + "." + module
            elif how == "dot" and "." in module:
                module, _, head = module.rpartition(".")
                name = head + "." + name
            else:
                name = name.swapcase()
        return module, name
    if kind == "text":  # anything, only through STACK_GLOBAL's strings
        return draw(st.text(max_size=20)), draw(st.text(max_size=20))
    parts = draw(st.lists(_IDENT, min_size=1, max_size=4))
    if kind == "torch":
        parts = ["torch", *parts]
    return ".".join(parts[:-1]) or draw(_IDENT), parts[-1]


def _pickle(module: str, name: str, how: str, use: str) -> bytes:
    p = P(4 if how == "stack" else 2).dict().mark()
    p.str("fc.weight").value(tensor(storage("0", 6), 0, (2, 3), (3, 1))).str("x")
    if how == "stack":
        p.str(module).str(name).raw(b"\x93")
    else:
        p.glob(module, name)
        if how == "memo":
            p.put(3).raw(b"0").get(3)
    if use == "reduce":
        p.mark().str("touch pttui_pwned").tuple().reduce()
    elif use == "newobj":
        p.raw(b")\x81")
    elif use == "build":  # an instance, then the global as its state's target
        p.raw(b"0").glob("argparse", "Namespace").raw(b")\x81").str("s").raw(b"b")
    return zip_bytes(torch_zip(p.setitems().bytes(), {"0": bytes(24)}))


def _plain(text: str) -> bool:
    return text.isprintable() and "\n" not in text and text.isascii()


@SETTINGS
@given(global_names(), st.sampled_from(["global", "memo", "stack"]),
       st.sampled_from(["referenced", "reduce", "newobj", "build"]))
def test_only_curated_globals_are_ever_offered_for_allow_listing(named, how, use):
    module, name = named
    if how != "stack" and not (_plain(module) and _plain(name) and module and name):
        how = "stack"  # GLOBAL's text lines cannot hold these; STACK_GLOBAL's strings can
    path = os.path.join(_DIR, "x.pt")
    with open(path, "wb") as f:
        f.write(_pickle(module, name, how, use))
    try:
        ckpt = open_checkpoint(path)
    except ReadError as err:
        assert "\n" not in str(err)
        return
    g = ckpt.globals
    seen = g.allowed + g.blocked + g.dangerous
    assert len(seen) == len(set(seen))  # each name in one class
    for n in g.blocked:
        assert n in globalscan.SAFE_TO_ALLOW or globalscan.classify(n) == "blocked", n
    for n in g.allowed:
        assert n in globalscan.ALLOWED, n
    full = f"{module}.{name}"
    if _plain(full):
        assert full in seen, (full, g.to_json())  # every name the pickle reaches is classed
        assert globalscan.classify(full) == ("allowed" if full in g.allowed else
                                             "blocked" if full in g.blocked else "dangerous")
    if full not in globalscan.ALLOWED and full not in globalscan.SAFE_TO_ALLOW \
            and globalscan.classify(full) == "dangerous":
        assert full not in g.blocked and full not in g.allowed
