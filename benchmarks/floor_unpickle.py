"""The floor for reading a torch zip's metadata: a bare restricted unpickle of data.pkl.

    python benchmarks/floor_unpickle.py FILE.pt

Reads ``data.pkl`` out of the zip the cheapest way (torch.save writes it as the
first, stored record: one local header, one read; other zips go through
``zipfile``) and runs a
``pickle.Unpickler`` whose ``find_class`` returns one trivial callable and whose
``persistent_load`` returns a small tuple: no checks, no tensor metadata, no
containers, no output. Any real reader does at least this much, so its time (as a
whole process) is the floor pttui inspect is held to.
"""

from __future__ import annotations

import io
import pickle
import struct
import sys


class _Stub(dict):
    """What every global becomes: callable with anything, takes items and state."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        pass

    def append(self, value) -> None:
        pass

    def extend(self, values) -> None:
        pass


class FloorUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        return _Stub

    def persistent_load(self, pid):
        return ("storage", 0)


def data_pkl(path: str) -> bytes:
    with open(path, "rb") as f:
        head = f.read(30)
        sig, _v, flags, method, _t, _d, _crc, csize, _usize, nlen, xlen = struct.unpack(
            "<4s5H3L2H", head)
        name = f.read(nlen)
        if (sig == b"PK\x03\x04" and name.endswith(b"/data.pkl") and method == 0
                and not flags & 0x8 and csize != 0xFFFFFFFF):
            f.seek(30 + nlen + xlen)
            return f.read(csize)
    import zipfile

    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        return z.read(name)


def floor(path: str):
    return FloorUnpickler(io.BytesIO(data_pkl(path))).load()


if __name__ == "__main__":
    floor(sys.argv[1])
