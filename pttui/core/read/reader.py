"""``open_checkpoint``: any supported file or folder -> :class:`Checkpoint`, metadata only.

Reads no tensor bytes, runs no pickled code and imports nothing named in a file;
time grows with the number of keys, not the size of the file.
"""

from __future__ import annotations

import gc
import json
import os

from pttui.core.read import containers as ct
from pttui.core.read import formats, stfile
from pttui.core.read.pickle import globalscan
from pttui.core.base.meta import Checkpoint, Container, GlobalsScan, ReadError, TensorMeta
from pttui.core.read.torchfile import Unpickled, read_legacy, read_zip
from pttui.core.read.pickle.unpickler import DType, Opaque, called_globals
from pttui.core.read.zipindex import ZipIndex

TYPE_CHECKING = False  # see meta.py: typing is not imported at run time
if TYPE_CHECKING:
    from typing import Any


def open_checkpoint(path: str, select: tuple[str, ...] | list[str] | None = None) -> Checkpoint:
    """Read ``path``'s structure. ``select`` picks a container by its path."""
    # Reading allocates one small object per key and frees none: the cyclic GC would
    # rescan them all again and again (half the time on a 100,000-key file).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _open(path, select)
    except ReadError as err:
        text = str(err)
        if text.isprintable():
            raise
        raise ReadError(_one_line(text)) from None
    except OSError as err:  # a shard or record vanished or became unreadable meanwhile
        raise ReadError(_one_line(f"{path}: cannot read it ({err.strerror or err})")) from None
    except MemoryError:
        raise ReadError(f"{_one_line(path)}: reading it needs more memory than there is; "
                        "the file is damaged or hostile") from None
    finally:
        if enabled:
            gc.enable()


def _one_line(text: str) -> str:
    """Names inside a message come from the file: no newline or escape code gets out."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _open(path: str, select: tuple[str, ...] | list[str] | None) -> Checkpoint:
    path = formats.checkpoint_in(path)
    fmt = formats.detect(path)
    if fmt == formats.SHARDED:
        ckpt = _read_sharded(path)
    elif fmt == formats.DCP:
        ckpt = _read_dcp(path)
    elif fmt == formats.DEEPSPEED:
        ckpt = _read_deepspeed(path)
    else:
        ckpt = _read_file(path, fmt)
    if select is not None:
        want = tuple(select)
        if ckpt.container(want) is None:
            have = ", ".join(".".join(c.path) or "(root)" for c in ckpt.containers) or "none"
            raise ReadError(f"{path}: no container {'.'.join(want) or '(root)'}; "
                            f"the containers are: {have}")
        ckpt.selected = want
    return ckpt


def _read_file(path: str, fmt: str, shard: str | None = None) -> Checkpoint:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if fmt == formats.SAFETENSORS:
            container, meta = stfile.read(f, size, path, shard)
            notes = stfile.restore_aliases(container, meta)
            return Checkpoint(path, fmt, [container], (), metadata=dict(meta),
                              other={"__metadata__": meta} if meta else {}, notes=notes)
        if fmt == formats.ZIP:
            un = read_zip(f, ZipIndex(f, size, path, lean=True), path, shard)
        elif fmt == formats.TAR:
            from pttui.core.read.legacytar import read_tar  # PyTorch 0.1-0.3: rare

            un = read_tar(f, size, path, shard)
        else:
            un = read_legacy(f, size, path, shard)
    return _from_unpickled(path, un)


UNPICKLE_ONLY = False  # set in readguard's preflight child: it only proves unpickling ends


def _from_unpickled(path: str, un: Unpickled) -> Checkpoint:
    if UNPICKLE_ONLY:  # the parent reads the file itself once the child finished in time
        return Checkpoint(path, un.format, [], None, GlobalsScan(), {}, [])
    walker = ct.Walker(path)
    found = ct.find_containers(un.root, walker)
    chosen = ct.best(found)
    scan = _globals_scan(un.unpickler, torchscript=un.format == "torchscript")
    notes = list(un.notes) + [f"problem: {p}" for p in _dedupe(un.problems)]
    if not found:
        notes.append("no tensors found: this file holds no weights")
    ckpt = Checkpoint(path, un.format, found, chosen.path if chosen else None, scan,
                      ct.other_entries(un.root, walker), notes)
    ckpt.storage_offsets = un.offsets
    ckpt.state_metadata = _state_metadata(un.root, chosen)
    return ckpt


def _globals_scan(up: Any, torchscript: bool = False) -> GlobalsScan:
    """Every global the pickle names, plus the ``numpy.dtypes`` classes of the NumPy dtypes
    it builds: torch's weights-only load needs those allow-listed too."""
    names = list(up.globals) + globalscan.numpy_dtype_classes(up.numpy_dtypes)
    return globalscan.scan(names, called_globals(up), torchscript)


def _dedupe(items: list[str], limit: int = 20) -> list[str]:
    out = list(dict.fromkeys(items))
    if len(out) > limit:
        out = out[:limit] + [f"... and {len(out) - limit} more"]
    return out


def _state_metadata(root: Any, chosen: Container | None) -> Any:
    """The ``_metadata`` a state_dict carries (BatchNorm versions); export keeps it."""
    node = root
    for part in (chosen.path if chosen else ()):
        node = dict(ct.children(node)).get(part)
    return getattr(node, "_metadata", None) if isinstance(node, dict) else None


# -- sharded sets -------------------------------------------------------------------

def _read_sharded(index_path: str) -> Checkpoint:
    with open(index_path, encoding="utf-8") as f:
        doc = json.load(f)
    folder = os.path.dirname(os.path.abspath(index_path))
    weight_map = doc["weight_map"]
    shards: dict[str, list[str]] = {}
    for key, shard in weight_map.items():
        if not isinstance(key, str) or not isinstance(shard, str):
            raise ReadError(f"{index_path}: weight_map must map tensor names to file names")
        shards.setdefault(shard, []).append(key)
    tensors: dict[str, TensorMeta] = {}
    notes: list[str] = []
    scan = GlobalsScan()
    for shard, keys in shards.items():
        shard_path = _inside(folder, shard, index_path, "shard")
        fmt = formats.detect(shard_path)
        if fmt not in _FILE_FORMATS:
            raise ReadError(f"{index_path}: shard {_one_line(shard)} is a {fmt} file, not "
                            "a weights file")
        part = _read_file(shard_path, fmt, shard=shard)
        if UNPICKLE_ONLY:
            continue  # every shard's pickle is what the preflight must see end
        got = part.tensors
        missing = [k for k in keys if k not in got]
        if missing:
            raise ReadError(f"{index_path}: {len(missing)} tensors the index places in {shard} "
                            f"are not there (first: {missing[0]}); the set is incomplete")
        extra = len(got) - len(keys)
        if extra > 0:
            notes.append(f"{shard} holds {extra} tensors the index does not list")
        for k in keys:
            tensors[k] = got[k]
        for cls in ("allowed", "blocked", "dangerous"):
            getattr(scan, cls).extend(getattr(part.globals, cls))
        notes.extend(f"{shard}: {n}" for n in part.notes)
    if UNPICKLE_ONLY:
        return Checkpoint(index_path, formats.SHARDED, [], None, GlobalsScan(), {}, [])
    tensors = {k: tensors[k] for k in weight_map}  # the index's order, not shard order
    scan = GlobalsScan(*(sorted(set(getattr(scan, c))) for c in ("allowed", "blocked",
                                                                   "dangerous")))
    other = {k: v for k, v in doc.items() if k != "weight_map"}
    ckpt = Checkpoint(index_path, formats.SHARDED, [Container((), tensors)], (), scan,
                      ct.summarize(other) if other else {}, notes)
    ckpt.shards = sorted(shards)
    return ckpt


_FILE_FORMATS = (formats.ZIP, formats.LEGACY, formats.TAR, formats.SAFETENSORS)


def _inside(folder: str, name: str, label: str, what: str, want_dir: bool = False) -> str:
    """``folder/name``, refusing a name that leads outside ``folder`` (``..``, an
    absolute path, a symlink) or that is not there."""
    shown = _one_line(name[:200])
    if not name or "\x00" in name:
        raise ReadError(f"{label}: names an empty or invalid {what} ({shown!r}); refusing")
    target = os.path.realpath(os.path.join(folder, name))
    if os.path.commonpath([os.path.realpath(folder), target]) != os.path.realpath(folder):
        raise ReadError(f"{label}: the {what} {shown} is outside its folder; refusing to "
                        "follow it")
    if not (os.path.isdir(target) if want_dir else os.path.isfile(target)):
        raise ReadError(f"{label}: {what} {shown} is missing; download or copy the whole set")
    return target


# -- DeepSpeed folders (``latest`` names the step folder) ------------------------------

def _read_deepspeed(folder: str) -> Checkpoint:
    latest = os.path.join(folder, "latest")
    with open(latest, "rb") as f:
        raw = f.read(257)
    tag = raw.decode("utf-8", "replace").strip()
    if not tag or len(raw) > 256 or not tag.isprintable():
        raise ReadError(f"{latest}: does not hold a checkpoint tag (one short line such as "
                        "global_step1000)")
    step = _inside(folder, tag, latest, "step folder", want_dir=True)
    names = sorted(n for n in os.listdir(step) if n.endswith("model_states.pt"))
    if not names:
        raise ReadError(f"{step}: no *model_states.pt file; this DeepSpeed step holds no "
                        "model weights")
    name = "mp_rank_00_model_states.pt" if "mp_rank_00_model_states.pt" in names else names[0]
    model = _inside(folder, os.path.join(tag, name), latest, "model file")  # no symlink out
    fmt = formats.detect(model)
    if fmt not in _FILE_FORMATS:
        raise ReadError(f"{model}: a {fmt} file, not a torch.save file")
    ckpt = _read_file(model, fmt)
    ckpt.notes.insert(0, f"DeepSpeed folder: 'latest' names {tag}; this is {tag}/{name}"
                      + (f" (of {len(names)} model-state files)" if len(names) > 1 else ""))
    return ckpt


# -- torch.distributed.checkpoint folders ----------------------------------------------

def _read_dcp(folder: str) -> Checkpoint:
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
    scan = _globals_scan(up)
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
