"""The metadata model every other part of pttui works on.

Nothing here touches tensor bytes or torch: a checkpoint is described by plain
records so that comparing, previewing and rendering cost no I/O.

Start-up matters here (``pttui inspect`` of a 2,000-key file is two thirds Python
start-up): the records are hand-written slotted classes and ``collections``
namedtuples, not ``@dataclass`` / ``typing.NamedTuple``, which would import
``dataclasses`` (and with it ``inspect``, ``ast``, ``dis``) and ``typing``, and
generate code with ``exec`` at import: ~13 ms, a sixth of the whole run.
"""

from __future__ import annotations

from collections import namedtuple
from math import prod

from pttui.core.base.dtypes import itemsize_bits

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any


class ReadError(Exception):
    """A file pttui cannot read. ``str(err)`` is one line: what is wrong, what to do."""

    @classmethod
    def opening(cls, path: str, err: OSError) -> "ReadError":
        """The one line for a file that could not be opened (the reader and the load's
        pre-check say the same)."""
        if isinstance(err, FileNotFoundError):
            return cls(f"{path}: no such file; check the path")
        if isinstance(err, IsADirectoryError):
            return cls(f"{path}: is a folder")
        if isinstance(err, PermissionError):
            return cls(f"{path}: permission denied; check the file's permissions")
        return cls(f"{path}: cannot read it ({err.strerror or err})")


class StorageRef(namedtuple("StorageRef", "key dtype numel location shard", defaults=(None,))):
    """Where a tensor's bytes live.

    ``key`` names the record (``data/3`` in a torch zip, the tensor name in a
    safetensors file); two tensors with the same ``(shard, key)`` share memory
    (tied weights). A NamedTuple: cheap to create for 100,000 keys, and a pickle
    cannot forge one (it can only build plain tuples).

    Fields: key (str), dtype (str), numel (int), location (str), shard (str | None).
    """

    __slots__ = ()

    @property
    def nbytes(self) -> int:
        return (self.numel * itemsize_bits(self.dtype) + 7) // 8

    @property
    def ident(self) -> tuple[str | None, str]:
        return (self.shard, self.key)


class TensorMeta(namedtuple("TensorMeta", "key shape dtype device storage storage_offset "
                             "stride kind", defaults=(None, 0, None, "tensor"))):
    """One tensor as stored: shape, dtype, stored device, size, storage identity.

    Fields: key (str), shape (tuple[int, ...]), dtype (str), device (str),
    storage (StorageRef | None), storage_offset (int), stride (tuple[int, ...] | None),
    kind: tensor | parameter | quantized | sparse | meta | nested | subclass.
    """

    __slots__ = ()

    @property
    def numel(self) -> int:
        return prod(self.shape)  # 1 for a scalar's ()

    @property
    def nbytes(self) -> int:
        return (self.numel * itemsize_bits(self.dtype) + 7) // 8

    def renamed(self, key: str) -> TensorMeta:
        return TensorMeta(key, *self[1:])

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "shape": list(self.shape), "dtype": self.dtype,
                "device": self.device, "nbytes": self.nbytes}


class Derivation(namedtuple("Derivation", "fn args inputs")):
    """How a tensor of a recipe's output is computed from others: ``fn`` (a name the
    export's ``recipe/values.py`` knows: transpose, cat, narrow, resample, ...) applied
    with ``args`` (plain hashable values) to ``inputs`` (TensorMetas of the key map the
    op saw, themselves stored or derived). Metadata only: nothing is computed here.

    Fields: fn (str), args (tuple), inputs (tuple[TensorMeta, ...]).
    """

    __slots__ = ()

    def leaves(self) -> list[TensorMeta]:
        """The stored tensors it reads, in order, each once."""
        out: dict[tuple, TensorMeta] = {}
        for meta in self.inputs:
            for leaf in (meta.derive.leaves() if isinstance(meta, Derived) else [meta]):
                out.setdefault((leaf.key, leaf.dtype), leaf)
        return list(out.values())


class Derived(namedtuple("Derived", TensorMeta._fields + ("derive",)), TensorMeta):
    """A tensor a value op computes (transposed, fused, resampled, ...): a TensorMeta
    with the output's shape and dtype, no storage of its own, and its ``derive``.
    ``key`` is the first stored tensor it reads (what the file calls it)."""

    __slots__ = ()

    @classmethod
    def of(cls, fn: str, args: tuple, inputs: tuple[TensorMeta, ...],
           shape: tuple[int, ...], dtype: str | None = None) -> Derived:
        first = inputs[0]
        return cls(first.key, tuple(shape), dtype or first.dtype, first.device, None, 0,
                   None, "tensor", Derivation(fn, tuple(args), tuple(inputs)))

    def renamed(self, key: str) -> Derived:
        return self._replace(key=key)


def source_keys(metas: Iterable[TensorMeta]) -> set[str]:
    """The stored tensors ``metas`` read: their keys, and the inputs of computed ones
    (a fused q/k/v uses all three)."""
    out: set[str] = set()
    for m in metas:
        if isinstance(m, Derived):
            out.update(leaf.key for leaf in m.derive.leaves())
        else:
            out.add(m.key)
    return out


class _Record:
    """What pttui used of ``@dataclass``: ``==`` field by field, a repr, ``replace``.

    Subclasses list their fields in ``__slots__`` (in order) and write ``__init__``.
    Like a dataclass's, instances compare equal only to the same class and are
    unhashable (they are mutable).
    """

    __slots__ = ()
    __hash__ = None  # type: ignore[assignment]

    def _fields(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._fields() == other._fields()  # type: ignore[attr-defined]
        return NotImplemented

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__qualname__}({args})"

    def replace(self, **changes: Any):
        """A copy with some fields changed (``dataclasses.replace``)."""
        new = object.__new__(type(self))
        for name in self.__slots__:
            setattr(new, name, changes.pop(name) if name in changes else getattr(self, name))
        if changes:
            raise TypeError(f"{type(self).__name__} has no field {next(iter(changes))!r}")
        return new


class Container(_Record):
    """A tensor-holding node of the checkpoint's object tree (a candidate state_dict)."""

    __slots__ = ("path", "tensors", "kind")

    def __init__(self, path: tuple[str, ...], tensors: dict[str, TensorMeta],
                 kind: str = "state_dict") -> None:
        self.path = path
        self.tensors = tensors
        self.kind = kind  # state_dict | module | optimizer | torchscript | tensor

    @property
    def params(self) -> int:
        return sum([prod(t.shape) for t in self.tensors.values()])  # numel, inlined

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    def to_json(self) -> dict[str, Any]:
        return {"path": list(self.path), "tensors": len(self.tensors),
                "params": self.params, "kind": self.kind}


class GlobalsScan(_Record):
    """Every global the pickle references, by class. Sorted, deduplicated names.
    ``calls``: how the pickle calls its dangerous globals, one line each
    (``posix.system('touch /tmp/x')``), what a full load would run."""

    __slots__ = ("allowed", "blocked", "dangerous", "calls")

    def __init__(self, allowed: list[str] | None = None, blocked: list[str] | None = None,
                 dangerous: list[str] | None = None, calls: list[str] | None = None) -> None:
        self.allowed = [] if allowed is None else allowed
        self.blocked = [] if blocked is None else blocked
        self.dangerous = [] if dangerous is None else dangerous
        self.calls = [] if calls is None else calls

    @property
    def weights_only_ok(self) -> bool:
        return not self.blocked and not self.dangerous

    def to_json(self) -> dict[str, list[str]]:
        # the inspect --json contract (DESIGN.md): these three; the calls are for people
        return {"allowed": self.allowed, "blocked": self.blocked, "dangerous": self.dangerous}


class Checkpoint(_Record):
    """What one openable thing holds, read without running it."""

    __slots__ = ("path", "format", "containers", "selected", "globals", "other", "notes",
                 "metadata", "storage_offsets", "state_metadata", "shards")

    def __init__(self, path: str, format: str, containers: list[Container],
                 selected: tuple[str, ...] | None, globals: GlobalsScan | None = None,
                 other: dict[str, Any] | None = None, notes: list[str] | None = None,
                 metadata: dict[str, Any] | None = None,
                 storage_offsets: dict[str, int] | None = None, state_metadata: Any = None,
                 shards: list[str] | None = None) -> None:
        self.path = path
        self.format = format
        self.containers = containers
        self.selected = selected
        self.globals = GlobalsScan() if globals is None else globals
        self.other = {} if other is None else other
        self.notes = [] if notes is None else notes
        self.metadata = {} if metadata is None else metadata  # safetensors __metadata__
        self.storage_offsets = {} if storage_offsets is None else storage_offsets  # legacy
        self.state_metadata = state_metadata  # the selected state_dict's ``_metadata``
        self.shards = [] if shards is None else shards

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
