"""Corpus entries whose trick is in the pickle: payloads, memo games, bombs, nesting."""

from __future__ import annotations

import io
import struct
import zipfile

from craft import P, Rec, legacy_header, torch_zip, zip_bytes
from make_corpus import B, DATA, KEYS, LW, MOD, W, Entry, legacy_file, touch


def _zip(pkl: bytes) -> bytes:
    return zip_bytes(torch_zip(pkl, DATA))


def _weights(p: P) -> P:
    """Open a dict holding fc.weight and fc.bias; the caller adds items, then setitems."""
    return p.dict().mark().str("fc.weight").value(W).str("fc.bias").value(B)


def torch_saved(obj, proto: int) -> bytes:
    """torch.save's own bytes at ``proto``, repacked with a fixed serialization id."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf, pickle_protocol=proto)
    z = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    recs = [Rec(i.filename, b"0" * 20 if i.filename.endswith("serialization_id")
                else z.read(i), pad=0) for i in z.infolist()]
    return zip_bytes(recs)


def _sd():
    import torch

    return {"fc.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3),
            "fc.bias": torch.tensor([0.5, -0.5])}


def _module(p: P, params: list, mods: list[tuple[str, int]], cls: str = "Net") -> P:
    """An nn.Module-like object: NEWOBJ of MOD.cls, then BUILD of its attribute dict."""
    p.glob(MOD, cls).raw(b")\x81")
    p.dict().mark().str("_parameters").dict().mark()
    for k, v in params:
        p.str(k).value(v)
    p.setitems().str("_buffers").dict().str("_modules").dict().mark()
    for k, i in mods:
        p.str(k).get(i)
    return p.setitems().setitems().raw(b"b")


def _bomb(levels: int, width: int, leaf) -> P:
    """Level 0 is ``leaf``; level i is a list of ``width`` references to level i-1."""
    p = P(2)
    leaf(p)
    p.put(0).raw(b"0")
    for i in range(1, levels):
        p.raw(b"]").mark()
        for _ in range(width):
            p.get(i - 1)
        p.raw(b"e").put(i).raw(b"0")
    return p


def pickle_entries() -> list[tuple[Entry, bytes]]:
    ok = dict(exit=0, format="torch-zip", keys=KEYS)
    out: list[tuple[Entry, bytes]] = []
    for proto in (4, 5):
        out.append((Entry(f"pickle_protocol{proto}.pt", f"pickles: protocol {proto}",
                          notes=["cannot read ('Unsupported operand 149')"], **ok),
                    torch_saved(_sd(), proto)))
    # STACK_GLOBAL from memoized strings that first appear as innocent values
    p = _weights(P(4)).str("a").str("posix").put(90).str("b").str("system").put(91)
    p.str("c").get(90).get(91).raw(b"\x93").mark().str(touch("stack_global")).tuple().reduce()
    out.append((Entry("pickle_stack_global_memo.pt", "pickles: STACK_GLOBAL memo tricks",
                      dangerous=["posix.system"], **ok), _zip(p.setitems().bytes())))
    # protocol-0 INST and OBJ inside a protocol-2 stream
    p = _weights(P(2)).str("inst").mark().raw(b"S'" + touch("inst").encode() + b"'\n")
    p.raw(b"ios\nsystem\n").str("obj").mark().glob(MOD, "Payload").str(touch("obj")).raw(b"o")
    out.append((Entry("pickle_inst_obj.pt", "pickles: INST/OBJ",
                      dangerous=["os.system", f"{MOD}.Payload"], **ok),
                _zip(p.setitems().bytes())))
    code = "import os; open(os.environ['PTTUI_MARKER_DIR'] + '/ran-exec', 'w')"
    p = _weights(P(2)).str("x").call("builtins", "exec", code)
    out.append((Entry("pickle_reduce_exec.pt", "pickles: REDUCE payload (exec)",
                      dangerous=["builtins.exec"], **ok), _zip(p.setitems().bytes())))
    p = _weights(P(2)).str("x").call("subprocess", "Popen", ("sh", "-c", touch("popen")))
    out.append((Entry("pickle_reduce_popen.pt", "pickles: REDUCE payload (Popen)",
                      dangerous=["subprocess.Popen"], **ok), _zip(p.setitems().bytes())))
    p = _weights(P(2)).str("x").call("builtins", "getattr",
                                     lambda q: q.call("builtins", "__import__", "os"), "system")
    p.mark().str(touch("getattr")).tuple().reduce()
    out.append((Entry("pickle_getattr_import.pt", "pickles: REDUCE through getattr/__import__",
                      dangerous=["builtins.getattr", "builtins.__import__"], **ok),
                _zip(p.setitems().bytes())))
    inner = P(2).call("posix", "system", touch("nested")).bytes()
    p = _weights(P(2)).str("x").call("pickle", "loads", inner)
    out.append((Entry("pickle_nested_loads.pt", "pickles: nested pickle.loads",
                      dangerous=["pickle.loads"], **ok), _zip(p.setitems().bytes())))
    p = _weights(P(2)).str("model").value(lambda q: _module(q, [("w", W)], []))
    out.append((Entry("pickle_foreign_class.pt", "pickles: a class from an unknown module",
                      0, format="torch-zip", keys=[*KEYS, "model.w"], dangerous=[f"{MOD}.Net"]),
                _zip(p.setitems().bytes())))
    # memo-reference bomb: 30 levels x 40 references, a few KB; as a tree 40**29 nodes
    bomb = _bomb(30, 40, lambda q: q.raw(b"]"))
    p = _weights(bomb).str("bomb").get(29)
    out.append((Entry("pickle_memo_bomb.pt", "pickles: memo-reference bomb (no tensors)",
                      **ok), _zip(p.setitems().bytes())))
    bomb = _bomb(30, 10, lambda q: q.dict().mark().str("w").value(W).setitems())
    out.append((Entry("pickle_tensor_bomb.pt", "pickles: memo-reference bomb over tensors", 2,
                      "reference bomb"), _zip(bomb.get(29).bytes())))
    p = P(2)
    _module(p, [("weight", W)], [])
    p.put(0).raw(b"0")
    for i in range(1, 30):
        _module(p, [], [(f"m{j}", i - 1) for j in range(10)])
        p.put(i).raw(b"0")
    out.append((Entry("pickle_module_bomb.pt", "pickles: memo-reference bomb over modules", 2,
                      "reference bomb"), _zip(p.get(29).bytes())))
    p = P(2).glob(MOD, "Net").raw(b")\x81").put(0)
    p.dict().mark().str("_parameters").dict().mark().str("weight").value(W).setitems()
    p.str("_buffers").dict().str("_modules").dict().mark().str("again").get(0).setitems()
    p.setitems().raw(b"b")
    out.append((Entry("pickle_module_cycle.pt", "pickles: a module that contains itself", 2,
                      "contains itself"), _zip(p.bytes())))
    # hash-cost bombs: T0 = (), Ti = (T(i-1),) * 10; hashing T29 walks 10**29 tuples
    for name, use in (("dict_key", lambda q: q.dict().get(29).raw(b"K\x01s")),
                      ("frozenset", lambda q: q.raw(b"\x8f(").get(29).raw(b"\x90"))):
        q = P(4).raw(b")").put(0)
        for i in range(1, 30):  # no POP: torch's weights-only unpickler has none either
            q.mark()
            for _ in range(10):
                q.get(i - 1)
            q.raw(b"t").put(i)
        out.append((Entry(f"pickle_hash_bomb_{name}.pt", "pickles: hash-cost bomb (a "
                          f"{name.replace('_', ' ')} that hashes 10^29 tuples)", 2,
                          "reading did not finish"), _zip(use(q).bytes())))
    p = _weights(P(2)).str("deep").raw(b"]" * 200_000).raw(b"a" * 199_999)
    out.append((Entry("pickle_nesting_200k_lists.pt", "pickles: 200,000-level nesting",
                      **ok), _zip(p.setitems().bytes())))
    p = _weights(P(2)).str("deep").raw(b"}X\x01\x00\x00\x00k" * 200_000).value(W)
    p.raw(b"s" * 200_000)
    out.append((Entry("pickle_nesting_200k_dicts.pt", "pickles: 200,000 nested dicts", 2,
                      "nest past"), _zip(p.setitems().bytes())))
    p = _weights(P(2)).str("x").raw(b"\x8d" + struct.pack("<Q", 1 << 62) + b"abc")
    out.append((Entry("pickle_huge_length.pt", "pickles: huge length prefix (BINUNICODE8)", 2,
                      "pickle is damaged"), _zip(p.bytes())))
    legacy = legacy_file({"fc.weight": LW}, {"0": DATA["0"]})
    cut = len(legacy_header())  # the main object: replace it with a huge BINBYTES8
    out.append((Entry("pickle_huge_length_legacy.pt", "pickles: huge length prefix (stream)",
                      2, "pickle"),
                legacy[:cut] + b"\x80\x04\x8e" + struct.pack("<Q", (1 << 63) - 1) + b"x"))
    p = _weights(P(2)).str("x").call("builtins", "bytearray", 8 << 30)
    out.append((Entry("pickle_bytearray_8gb.pt", "pickles: a 8 GB allocation request",
                      **ok), _zip(p.setitems().bytes())))
    p = P(2).dict().mark().int(10 ** 5000).value(W).str("fc.bias").value(B).setitems()
    out.append((Entry("pickle_giant_int_key.pt", "pickles: a 5,000-digit integer key", 0,
                      format="torch-zip", keys=["<int of 16610 bits>", "fc.bias"]),
                _zip(p.bytes())))
    p = P(2).dict().mark().str("x" * 5000).dict().mark().str("w").value(W).setitems()
    out.append((Entry("pickle_long_names.pt", "pickles: a 5,000-character name prefix", 2,
                      "nest past"), _zip(p.setitems().bytes())))
    p = _weights(P(2)).str("x").raw(b"\x82\x07")  # EXT1 7: an unregistered extension code
    out.append((Entry("pickle_ext_code.pt", "pickles: extension-registry opcode", 2,
                      "pickle is damaged"), _zip(p.setitems().bytes())))
    p = _weights(P(2)).str("x").raw(b"Pfoo\n")  # a protocol-0 persistent id torch never writes
    out.append((Entry("pickle_persid_string.pt", "pickles: unknown persistent id", 2,
                      "does not recognise"), _zip(p.setitems().bytes())))
    p = _weights(P(2)).str("x").glob("posix", "system").dict().mark().str("called")
    p.raw(b"\x89").setitems().raw(b"b")  # BUILD on the class itself: hide that it was called
    out.append((Entry("pickle_build_on_global.pt", "pickles: BUILD on a global", 2,
                      "pickle is damaged"), _zip(p.setitems().bytes())))
    return out
