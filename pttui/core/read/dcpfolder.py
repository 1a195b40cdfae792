"""A torch.distributed.checkpoint folder: its ``.metadata`` pickle, read by the
restricted unpickler, lists every tensor's global shape and dtype."""

from __future__ import annotations

import os

from pttui.core.base.meta import Checkpoint, Container, ReadError, TensorMeta
from pttui.core.read import containers as ct
from pttui.core.read import formats
from pttui.core.read.pickle.unpickler import DType, Opaque
from pttui.core.read.weightsfile import globals_scan

TYPE_CHECKING = False  # see meta.py: typing is not imported at run time
if TYPE_CHECKING:
    from typing import Any


def read(folder: str, unpickle_only: bool = False) -> Checkpoint:
    from pttui.core.read.pickle.unpickler import RestrictedUnpickler

    meta_path = os.path.join(folder, ".metadata")
    with open(meta_path, "rb") as f:
        data = f.read(1 << 30)

    def no_pid(pid: Any) -> Any:
        raise ReadError(f"{meta_path}: unexpected persistent reference")

    up = RestrictedUnpickler(data, no_pid, meta_path)
    root = up.run()
    sdm = root.state.get("state_dict_metadata") if isinstance(root, Opaque) and isinstance(
        root.state, dict) else None
    if not isinstance(sdm, dict):
        raise ReadError(f"{meta_path}: not a torch.distributed.checkpoint metadata file")
    tensors: dict[str, TensorMeta] = {}
    other: dict[str, Any] = {}
    for key, m in sdm.items():
        t = _dcp_tensor(ct._key(key), m)
        if t is None:
            other[ct._key(key)] = "<non-tensor entry>"
        else:
            tensors[t.key] = t
    scan = globals_scan(up)
    return Checkpoint(folder, formats.DCP, [Container((), tensors)], (), scan, other,
                      [f"problem: {p}" for p in up.problems])


def _dcp_tensor(key: str, m: Any) -> TensorMeta | None:
    if not (isinstance(m, Opaque) and isinstance(m.state, dict)
            and type(m).qualname.endswith("TensorStorageMetadata")):
        return None
    props, size = m.state.get("properties"), m.state.get("size")
    st = props.state if isinstance(props, Opaque) else None
    dtype = st[0] if isinstance(st, tuple) and st else (
        st.get("dtype") if isinstance(st, dict) else None)
    if not isinstance(size, tuple) or len(size) > 64 or not all(
            type(d) is int and 0 <= d < 1 << 63 for d in size):
        return None
    return TensorMeta(key, size, str(dtype) if isinstance(dtype, DType) else "unknown", "cpu")
