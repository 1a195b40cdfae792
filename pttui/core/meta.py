"""The metadata model every other part of pttui works on.

Nothing here touches tensor bytes or torch: a checkpoint is described by plain
dataclasses so that comparing, previewing and rendering cost no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pttui.core.dtypes import itemsize_bits


class ReadError(Exception):
    """A file pttui cannot read. ``str(err)`` is one line: what is wrong, what to do."""


class StorageRef(NamedTuple):
    """Where a tensor's bytes live.

    ``key`` names the record (``data/3`` in a torch zip, the tensor name in a
    safetensors file); two tensors with the same ``(shard, key)`` share memory
    (tied weights). A NamedTuple: cheap to create for 100,000 keys, and a pickle
    cannot forge one (it can only build plain tuples).
    """

    key: str
    dtype: str
    numel: int
    location: str
    shard: str | None = None

    @property
    def nbytes(self) -> int:
        return (self.numel * itemsize_bits(self.dtype) + 7) // 8

    @property
    def ident(self) -> tuple[str | None, str]:
        return (self.shard, self.key)


class TensorMeta(NamedTuple):
    """One tensor as stored: shape, dtype, stored device, size, storage identity."""

    key: str
    shape: tuple[int, ...]
    dtype: str
    device: str
    storage: StorageRef | None = None
    storage_offset: int = 0
    stride: tuple[int, ...] | None = None
    kind: str = "tensor"  # tensor | parameter | quantized | sparse | meta | nested | subclass

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return (self.numel * itemsize_bits(self.dtype) + 7) // 8

    def renamed(self, key: str) -> TensorMeta:
        return TensorMeta(key, *self[1:])

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "shape": list(self.shape), "dtype": self.dtype,
                "device": self.device, "nbytes": self.nbytes}


@dataclass(slots=True)
class Container:
    """A tensor-holding node of the checkpoint's object tree (a candidate state_dict)."""

    path: tuple[str, ...]
    tensors: dict[str, TensorMeta]
    kind: str = "state_dict"  # state_dict | module | optimizer | torchscript

    @property
    def params(self) -> int:
        return sum(t.numel for t in self.tensors.values())

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    def to_json(self) -> dict[str, Any]:
        return {"path": list(self.path), "tensors": len(self.tensors),
                "params": self.params, "kind": self.kind}


@dataclass(slots=True)
class GlobalsScan:
    """Every global the pickle references, by class. Sorted, deduplicated names."""

    allowed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    dangerous: list[str] = field(default_factory=list)

    @property
    def weights_only_ok(self) -> bool:
        return not self.blocked and not self.dangerous

    def to_json(self) -> dict[str, list[str]]:
        return {"allowed": self.allowed, "blocked": self.blocked, "dangerous": self.dangerous}


@dataclass(slots=True)
class Checkpoint:
    """What one openable thing holds, read without running it."""

    path: str
    format: str
    containers: list[Container]
    selected: tuple[str, ...] | None
    globals: GlobalsScan = field(default_factory=GlobalsScan)
    other: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)  # safetensors __metadata__
    storage_offsets: dict[str, int] = field(default_factory=dict)  # legacy: key -> offset
    state_metadata: Any = None  # the selected state_dict's ``_metadata`` (module versions)
    shards: list[str] = field(default_factory=list)

    def container(self, path: tuple[str, ...] | None = None) -> Container | None:
        want = self.selected if path is None else tuple(path)
        for c in self.containers:
            if c.path == want:
                return c
        return None

    @property
    def tensors(self) -> dict[str, TensorMeta]:
        c = self.container()
        return c.tensors if c is not None else {}

    @property
    def devices(self) -> list[str]:
        seen: dict[str, None] = {}
        for c in self.containers:
            for t in c.tensors.values():
                seen.setdefault(t.device, None)
        return list(seen)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "containers": [c.to_json() for c in self.containers],
            "selected": list(self.selected) if self.selected is not None else None,
            "tensors": [t.to_json() for t in self.tensors.values()],
            "globals": self.globals.to_json(),
            "other": self.other,
        }
