"""Write a legacy tar checkpoint (PyTorch 0.1-0.3) from real tensors.

No installed torch writes this format any more, so this follows the layout that
``torch.serialization._legacy_load`` -> ``legacy_load`` reads, byte for byte, and
the way old ``torch.save`` wrote it: members ``sys_info``, ``pickle``, ``tensors``,
``storages`` (in that order), keys as integers (the objects' ``_cdata``),
persistent ids as their strings. ``torch.load(weights_only=False)`` reads the
result; tests compare pttui's reading with it.
"""

from __future__ import annotations

import io
import pickle
import struct
import tarfile

_LEGACY_TYPES = {"float32": "Float", "float64": "Double", "float16": "Half", "uint8": "Byte",
                 "int8": "Char", "int16": "Short", "int32": "Int", "int64": "Long",
                 "bool": "Bool", "bfloat16": "BFloat16"}


def legacy_tar_bytes(obj, *, protocol: int = 2, pax_comment: bool = True,
                     location: str = "cpu") -> bytes:
    """``obj`` (dicts/lists of CPU tensors) as torch 0.3 would have saved it."""
    import torch

    tensors: dict[int, torch.Tensor] = {}  # tensor key -> tensor
    tensor_keys: dict[int, int] = {}  # id(tensor) -> key
    storages: dict[int, torch.Tensor] = {}  # storage key -> a tensor holding it
    storage_keys: dict[int, int] = {}  # data_ptr -> key

    def storage_key(t) -> int:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in storage_keys:
            storage_keys[ptr] = 1 + len(storage_keys)
            storages[storage_keys[ptr]] = t
        return storage_keys[ptr]

    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, torch.Tensor):
                if id(o) not in tensor_keys:
                    tensor_keys[id(o)] = 1000 + len(tensor_keys)
                    tensors[tensor_keys[id(o)]] = o
                    storage_key(o)
                return str(tensor_keys[id(o)])
            return None

    def dump(value, f):
        pickle.dump(value, f, protocol=protocol)

    body = io.BytesIO()
    Pickler(body, protocol=protocol).dump(obj)
    pickled = body.getvalue()

    tens = io.BytesIO()
    dump(len(tensors), tens)
    for key, t in tensors.items():
        ttype = getattr(torch, _LEGACY_TYPES[str(t.dtype).removeprefix("torch.")] + "Tensor")
        dump((key, storage_key(t), ttype), tens)
        tens.write(struct.pack("<i", t.dim()) + b"\0" * 4)  # ndim, then 4 bytes of padding
        tens.write(struct.pack(f"<{t.dim()}q", *t.shape))
        tens.write(struct.pack(f"<{t.dim()}q", *t.stride()))
        tens.write(struct.pack("<q", t.storage_offset()))

    stor = io.BytesIO()
    dump(len(storages), stor)
    for key, t in storages.items():
        dtype = str(t.dtype).removeprefix("torch.")
        stype = getattr(torch, _LEGACY_TYPES[dtype] + "Storage")
        dump((key, location, stype), stor)
        raw = torch.empty(0, dtype=torch.uint8).set_(t.untyped_storage()).numpy().tobytes()
        stor.write(struct.pack("<q", len(raw) // t.element_size()))
        stor.write(raw)
    dump([], stor)  # storage views: none (torch 0.3 wrote an empty list for plain storages)

    sys_info = io.BytesIO()
    dump({"protocol_version": 1001, "little_endian": True,
          "type_sizes": {"short": 2, "int": 4, "long": 8}}, sys_info)

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("sys_info", sys_info), ("pickle", io.BytesIO(pickled)),
                           ("tensors", tens), ("storages", stor)):
            raw = data.getvalue()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(raw), 1_500_000_000, 0o600
            if pax_comment and name == "tensors":  # a pax extended header before a member
                info.pax_headers = {"comment": "written by tests/hostile/legacy_tar.py"}
            tar.addfile(info, io.BytesIO(raw))
    return out.getvalue()


# -- byte-level, without torch (the hostile corpus) ---------------------------------------

def tar_of(members: list[tuple[str, bytes]]) -> bytes:
    """A deterministic tar of ``(name, data)`` members, in order (duplicates allowed)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o600
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _record(*values) -> bytes:
    """A protocol-2 pickle of a tuple; ``("torch", "FloatStorage")`` pairs become GLOBALs."""
    from craft import P

    p = P(2).mark()
    for v in values:
        if isinstance(v, tuple) and len(v) == 2 and v[0] == "torch":
            p.glob(*v)
        else:
            p.value(v)
    return p.tuple().bytes()


def storages_member(storages: list[tuple[int, int, bytes]], *, location: str = "cpu",
                    count: int | None = None, views: list | None = None) -> bytes:
    """``(key, numel, raw)`` float32 storages, then the view list."""
    out = pickle.dumps(len(storages) if count is None else count, protocol=2)
    for key, numel, raw in storages:
        out += _record(key, location, ("torch", "FloatStorage"))
        out += struct.pack("<q", numel) + raw
    return out + pickle.dumps(views or [], protocol=2)


def tensors_member(tensors: list[tuple[int, int, tuple, tuple, int]],
                   count: int | None = None) -> bytes:
    """``(key, storage_key, shape, stride, offset)`` float32 tensors."""
    out = pickle.dumps(len(tensors) if count is None else count, protocol=2)
    for key, skey, shape, stride, offset in tensors:
        out += _record(key, skey, ("torch", "FloatTensor"))
        out += struct.pack("<i", len(shape)) + b"\0" * 4
        out += struct.pack(f"<{len(shape)}q", *shape) + struct.pack(f"<{len(shape)}q", *stride)
        out += struct.pack("<q", offset)
    return out


def object_pickle(entries: dict) -> bytes:
    """A dict of ``name -> tensor key (int: a persistent id) or an emitter``."""
    from craft import P

    p = P(2).dict().mark()
    for name, v in entries.items():
        p.str(name)
        if isinstance(v, int):
            p.str(str(v)).persid()
        else:
            p.value(v)
    return p.setitems().bytes()


SYS_INFO = pickle.dumps({"protocol_version": 1001, "little_endian": True,
                         "type_sizes": {"short": 2, "int": 4, "long": 8}}, protocol=2)
