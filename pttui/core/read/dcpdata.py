"""Tensors of a torch.distributed.checkpoint (DCP) folder, read without running its pickle.

torch's own ``FileSystemReader.read_metadata`` runs ``pickle.load`` on ``.metadata``.
Here the same bytes go first through memoguard (the scan the main reader applies:
memo indices and length prefixes that would make the C unpickler allocate
gigabytes), then through an allow-list unpickler that builds torch's DCP metadata
classes and nothing else; torch then reads tensor records into preallocated tensors.
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
from functools import partial
from typing import Any

from pttui.core.read.pickle import memoguard
from pttui.core.base import deadline
from pttui.core.base.meta import ReadError, TensorMeta

_DCP_CLASSES = {
    ("torch.distributed.checkpoint.metadata", n) for n in (
        "Metadata", "TensorStorageMetadata", "BytesStorageMetadata", "ChunkStorageMetadata",
        "TensorProperties", "MetadataIndex", "StorageMeta", "_MEM_FORMAT_ENCODING")} | {
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"), ("torch", "Size"),
    ("torch.serialization", "_get_layout"), ("collections", "OrderedDict")}
# torch records ``storage_meta.checkpoint_id`` as a path object; it becomes a plain str
# (never a pathlib object, and a Windows path saved elsewhere reads on Linux too)
_DCP_PATHS = {(m, n) for m in ("pathlib", "pathlib._local") for n in (
    "Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath")}
_MAX_METADATA = 1 << 30


def reader(folder: str) -> tuple[Any, Any, Any]:
    """A FileSystemReader whose metadata comes from an allow-list unpickler.

    torch's own ``read_metadata`` runs ``pickle.load`` on ``.metadata``, which would
    execute anything a hostile folder put there. Tensor records themselves are read
    by torch with ``weights_only=True``; non-tensor (bytes) records would go through
    ``torch.load(weights_only=False)``, so the planner refuses them.
    """
    import torch

    if not torch.distributed.is_available():
        raise ReadError(f"{folder}: this torch build has no torch.distributed; it cannot "
                        "read DCP checkpoints")
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner

    meta_path = os.path.join(folder, ".metadata")

    class _Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) in _DCP_CLASSES:
                return super().find_class(module, name)
            if (module, name) in _DCP_PATHS:
                return partial(_path_str, meta_path)
            if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
                return getattr(torch, name)
            raise ReadError(f"{meta_path}: references {module}.{name}, which a DCP metadata "
                            "file does not need; pttui will not unpickle it")

        def persistent_load(self, pid: Any) -> Any:
            raise ReadError(f"{meta_path}: unexpected persistent reference; refusing")

    try:
        with open(meta_path, "rb") as f:
            data = f.read(_MAX_METADATA + 1)
        if len(data) > _MAX_METADATA:
            raise ReadError(f"{meta_path}: over {_MAX_METADATA >> 20} MiB; a DCP metadata "
                            "file is far smaller, refusing")
        # the bytes checked are the bytes unpickled; a guarded reader's deadline grows
        deadline.pickle_measured(memoguard.check(data, 0, meta_path))
        try:
            md = _Unpickler(io.BytesIO(data)).load()
        finally:
            deadline.pickle_done()
    except ReadError:
        raise
    except OSError as err:
        raise ReadError(f"{meta_path}: cannot read it ({err.strerror or err})") from None
    except RecursionError:
        raise ReadError(f"{meta_path}: the pickle nests too deeply to read safely") from None
    except Exception as err:  # noqa: BLE001 - a damaged pickle raises anything
        raise ReadError(f"{meta_path}: cannot be read ({type(err).__name__}); the "
                        "checkpoint metadata is damaged") from None
    if type(md).__name__ != "Metadata" or not isinstance(
            getattr(md, "storage_data", None), dict):
        raise ReadError(f"{meta_path}: not a torch.distributed.checkpoint metadata file")
    root = os.path.realpath(folder)
    for info in md.storage_data.values():
        rel = getattr(info, "relative_path", None)
        target = os.path.realpath(os.path.join(root, str(rel)))
        if not isinstance(rel, str) or os.path.commonpath([root, target]) != root:
            raise ReadError(f"{meta_path}: a record points outside the folder ({rel!r}); "
                            "refusing")

    class _Reader(FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            from torch.distributed.checkpoint.metadata import StorageMeta

            if not isinstance(getattr(md, "storage_meta", None), StorageMeta):
                md.storage_meta = StorageMeta()
            md.storage_meta.load_id = self.load_id
            return md

    class _Planner(DefaultLoadPlanner):
        def load_bytes(self, read_item: Any, value: Any) -> None:
            raise ReadError(f"{folder}: a non-tensor entry would need unpickling with "
                            "weights_only=False; refusing")

    return _Reader(folder), _Planner, md


def read(opened: tuple[Any, Any, Any], meta: TensorMeta, dtype: Any) -> Any:
    """One tensor of the folder, read by torch into a preallocated tensor."""
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException

    fs_reader, planner_cls, md = opened
    entry = md.state_dict_metadata.get(meta.key)
    if type(entry).__name__ != "TensorStorageMetadata":
        raise ReadError(f"{meta.key}: not a tensor entry of the DCP checkpoint; pttui "
                        "does not unpickle its other entries")
    out = torch.empty(tuple(meta.shape), dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dcp.load({meta.key: out}, storage_reader=fs_reader, planner=planner_cls(),
                     no_dist=True)
        except ReadError:
            raise
        except (Exception, CheckpointException) as err:  # noqa: BLE001 - torch raises
            raise _dcp_error(meta.key, err) from None  # many kinds, some BaseException
    return out


def _dcp_error(key: str, err: BaseException) -> ReadError:
    """One line for what went wrong; torch wraps each rank's error (ours too) in a
    multi-line CheckpointException, a BaseException."""
    failures = getattr(err, "failures", None)
    if isinstance(failures, dict) and failures:
        first = next(iter(failures.values()))
        err = first[0] if isinstance(first, tuple) and first else err
    if isinstance(err, ReadError):
        return err
    text = str(err).splitlines()[0][:200] if str(err) else ""
    return ReadError(f"{key}: torch.distributed.checkpoint could not read it "
                     f"({type(err).__name__}{': ' + text if text else ''})")


def _path_str(label: str, *parts: Any) -> str:
    if not parts or not all(type(p) is str and len(p) < 1 << 16 for p in parts):
        raise ReadError(f"{label}: a path in it is not made of strings; refusing")
    return os.path.join(*parts)
