"""The inert stand-ins the restricted unpickler builds instead of real objects.

They hold what a pickle gave them (arguments, state, items) and do nothing else,
so walking or printing them can never run code from a file.
"""

from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False  # see meta.py: typing is not imported at run time
if TYPE_CHECKING:
    from typing import Any


class OrderedDict(dict):
    """``collections.OrderedDict`` as read: a dict (ordered, as every dict is) that takes the
    attributes a state_dict carries (``_metadata``). Every tensor's hook dict is one, so size
    counts: 80 bytes empty against 128, and no 56-byte link per key (a 100,000-key
    state_dict: 3.8 MB against 9.1)."""

    __slots__ = ("__dict__",)


class Opaque:
    """An instance of a class pttui refuses to import: its name, arguments and state."""

    __slots__ = ("args", "state", "items", "__weakref__")
    qualname = "?"
    first_call: tuple | None = None  # set on the class by OpaqueMeta: what the payload ran

    def __new__(cls, *args: Any, **kwargs: Any) -> Opaque:
        self = object.__new__(cls)
        self.args = args + ((kwargs,) if kwargs else ())
        self.state = None
        self.items = None
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # NEWOBJ must not re-run anything
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    # APPENDS / SETITEMS / ADDITEMS on a non-builtin call these; record, never dispatch.
    def append(self, value: Any) -> None:
        self._items_list().append(value)

    def extend(self, values: Any) -> None:
        self._items_list().extend(values if isinstance(values, list) else list(values))

    def add(self, value: Any) -> None:
        self._items_list().append(value)

    def __setitem__(self, key: Any, value: Any) -> None:
        if not isinstance(self.items, dict):
            self.items = {}
        self.items[key] = value

    def _items_list(self) -> list:
        if not isinstance(self.items, list):
            self.items = []
        return self.items

    def __call__(self, *args: Any, **kwargs: Any) -> Opaque:
        """Calling what an unknown call returned (``getattr(os, "system")("...")``):
        recorded as one more inert object, so the chain is read, not refused."""
        return CallResult(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<{type(self).qualname}>"


class CallResult(Opaque):
    __slots__ = ()
    qualname = "<result of a call>"


class OpaqueMeta(type):
    """Calling an opaque class (REDUCE) records the call instead of running it."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Opaque:
        cls.called = True  # type: ignore[attr-defined]
        if cls.first_call is None:  # type: ignore[attr-defined]
            cls.first_call = args + ((kwargs,) if kwargs else ())  # type: ignore[attr-defined]
        return cls.__new__(cls, *args, **kwargs)


class DType(str):
    """A dtype token: ``torch.float32`` read as the string ``float32``."""


class StorageType(str):
    """A storage class token (``FloatStorage``); its value is the dtype it holds."""


class Device(str):
    """A ``torch.device`` token (``cuda:0``)."""


class StorageView(namedtuple("StorageView", "ref offset")):
    """A legacy-format view into a storage (``view_metadata`` in the persistent id):
    ``ref`` a StorageRef, ``offset`` an int."""

    __slots__ = ()
