"""The child process that runs the real ``torch.load`` (``python -m pttui.core.load._child``).

It is the only place pttui unpickles a user's file with torch, so a hang, a crash,
an out-of-memory kill or hostile code ends here, not in the UI. The request comes
as one JSON argument; the answer goes back as one JSON object on the original
stdout, which the child keeps for itself: fd 1 is pointed at stderr before
anything from the file runs, so what the file prints cannot forge the answer by
accident. Never a pickle goes back, only plain data.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import resource
import sys
import threading
import time
import warnings
from collections.abc import Mapping
from typing import Any

from pttui.core.load import sandbox as load_sandbox
from pttui.core.base.orphans import die_with_spawner

MAX_TENSORS = 200_000
MAX_OTHER = 500
MAX_DEPTH = 64


def main(argv: list[str]) -> None:
    req = json.loads(argv[1])
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # the file's prints go to stderr, never into the answer
    sys.stdout = sys.stderr
    # while single-threaded: a namespace change applies to the calling thread only
    network = load_sandbox.drop_network() if req.get("unsafe") else None
    die_with_spawner()  # even while C code holds the GIL (a crafted pickle's hashing)
    _exit_when_parent_goes()
    report = run(req)
    if network is not None:
        report.setdefault("effective", {})["network"] = network
    out.write(json.dumps(report, default=str))
    out.flush()
    sys.stderr.flush()
    os._exit(0)  # skip destructors of whatever was loaded: nothing more of it runs


def _exit_when_parent_goes() -> None:
    """The parent holds our stdin open; EOF means it died, so stop loading."""
    def watch() -> None:
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        os._exit(70)

    threading.Thread(target=watch, daemon=True).start()


def apply_limits(req: dict[str, Any], device: str | None) -> None:
    """Ceilings for this process, set before the file is touched.

    RLIMIT_AS turns a runaway allocation into a MemoryError we can report instead
    of a visit from the OOM killer; CUDA reserves huge address ranges, so it is
    only set when the tensors go to the CPU or the meta device.
    """
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    budget = req.get("memory_limit")
    if budget is None and req.get("unsafe"):
        budget = _available_ram() + int(req.get("size", 0))
    on_gpu = device is None or str(device).startswith("cuda")
    if budget is not None and not (on_gpu and _cuda_available()):
        _lower(resource.RLIMIT_AS, _vms() + int(budget))
    if req.get("unsafe"):
        _lower(resource.RLIMIT_FSIZE, max(2 * int(req.get("size", 0)), 256 << 20))
        _lower(resource.RLIMIT_NOFILE, 4096)
        os.umask(0o077)


def _lower(which: int, value: int) -> None:
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    if soft == resource.RLIM_INFINITY or value < soft:
        resource.setrlimit(which, (value, hard))


def _vms() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _available_ram() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001 - a missing psutil only loosens the ceiling
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def run(req: dict[str, Any]) -> dict[str, Any]:
    """Load, summarise, and describe the outcome as JSON-able data."""
    stage = "import"
    t0 = time.monotonic()
    effective: dict[str, Any] = {"weights_only": req["weights_only"],
                                 "allow_globals": list(req["allow_globals"])}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            import torch

            device = _resolve_device(req["map_location"], torch)
            effective["map_location"] = "keep" if device is None else device
            stage = "limits"
            apply_limits(req, device)
            if req["format"] == "safetensors":
                stage = "load"
                effective.update(mmap=None, weights_only=True, allow_globals=[],
                                 loader="safetensors")
                t1 = time.monotonic()
                obj = _load_safetensors(req["path"], device, torch)
            else:
                stage = "allow_globals"
                allow = [(_resolve(name), name) for name in req["allow_globals"]]
                stage = "load"
                effective.update(mmap=bool(req["mmap"]), loader="torch.load")
                t1 = time.monotonic()
                with torch.serialization.safe_globals(allow):
                    obj = torch.load(req["path"], map_location=device,
                                     weights_only=req["weights_only"], mmap=req["mmap"])
            load_seconds = time.monotonic() - t1
            stage = "summary"
            keep: list[tuple[str, Any]] | None = [] if req.get("save_to") else None
            summary = summarize(obj, torch, keep)
            report: dict[str, Any] = {"ok": True, "summary": summary,
                                      "load_seconds": load_seconds}
            if keep is not None:
                stage = "save"
                from pttui.core.load import _save as _load_save

                report["saved"] = _load_save.save(
                    req["save_to"], keep, torch, source=req["path"],
                    object_type=summary["type"], other=summary["other"])
        except BaseException as err:  # noqa: BLE001 - every failure is reported, none raised
            message = str(err)
            report = {"ok": False, "error": {"type": type(err).__name__, "message": message,
                                             "stage": stage}}
            if "Weights only load failed" in message:
                report["extra"] = _globals_info(req["path"])
    report["effective"] = effective
    report["seconds"] = time.monotonic() - t0
    report["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    report["warnings"] = list(dict.fromkeys(
        str(w.message).strip().splitlines()[0] for w in caught if str(w.message).strip()))[:10]
    return report


def _resolve_device(map_location: str, torch: Any) -> str | None:
    if map_location == "keep":
        return None
    if map_location == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return map_location


def _resolve(name: str) -> Any:
    """``module.Name`` -> the object; importing the module is the user's explicit choice."""
    parts = name.split(".")
    missing: ModuleNotFoundError | None = None
    for i in range(len(parts) - 1, 0, -1):
        modname = ".".join(parts[:i])
        try:
            obj = importlib.import_module(modname)
        except ModuleNotFoundError as err:
            if err.name is not None and modname != err.name:
                raise  # the module exists but one of its own imports is missing
            missing = err
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                raise AttributeError(f"Can't get attribute '{'.'.join(parts[i:])}' on "
                                     f"<module '{modname}'>")
            obj = getattr(obj, attr)
        return obj
    raise missing or ModuleNotFoundError(f"No module named '{parts[0]}'", name=parts[0])


def _load_safetensors(path: str, device: str | None, torch: Any) -> dict[str, Any]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    from pttui.core.base.dtypes import SAFETENSORS_DTYPES

    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
        if device == "meta":
            tensors = {}
            for key in f.keys():  # noqa: SIM118 - safe_open is no dict
                sl = f.get_slice(key)
                dtype = getattr(torch, SAFETENSORS_DTYPES.get(sl.get_dtype(), "uint8"))
                tensors[key] = torch.empty(sl.get_shape(), dtype=dtype, device="meta")
    if device != "meta":
        tensors = load_file(path, device="cuda:0" if device == "cuda" else (device or "cpu"))
    return {**tensors, "__metadata__": meta} if meta else tensors


def _globals_info(path: str) -> dict[str, Any]:
    """After a weights-only refusal: every unsafe global, by torch and by pttui's scan."""
    info: dict[str, Any] = {}
    try:
        import torch

        info["unsafe_globals"] = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - the message still names the first one
        pass
    try:
        from pttui.core.read.reader import open_checkpoint

        info["globals_scan"] = open_checkpoint(path).globals.to_json()
    except Exception:  # noqa: BLE001 - without the scan every name counts as called
        pass
    return info


# -- summary ----------------------------------------------------------------------

def summarize(obj: Any, torch: Any, keep: list[tuple[str, Any]] | None = None
              ) -> dict[str, Any]:
    """Every reachable tensor (dotted keys, like a state_dict) and the scalar entries;
    ``keep`` collects every (key, tensor), for writing them out."""
    tensors: list[dict[str, Any]] = []
    other: dict[str, Any] = {}
    state = {"truncated": False, "bytes": 0, "count": 0}
    seen: set[int] = set()

    def add_tensor(key: str, t: Any) -> None:
        state["count"] += 1
        if keep is not None:
            keep.append((key, t))
        try:
            nbytes = t.numel() * t.element_size()
            entry = {"key": key, "shape": list(t.shape),
                     "dtype": str(t.dtype).removeprefix("torch."), "device": str(t.device),
                     "nbytes": nbytes}
        except Exception:  # noqa: BLE001 - nested/odd tensors: report what we can
            nbytes, entry = 0, {"key": key, "shape": None, "dtype": str(t.dtype)
                                .removeprefix("torch."), "device": str(t.device), "nbytes": 0}
        if isinstance(t, torch.nn.Parameter):
            entry["parameter"] = True
        state["bytes"] += nbytes
        if len(tensors) < MAX_TENSORS:
            tensors.append(entry)
        else:
            state["truncated"] = True

    def add_other(key: str, value: Any) -> None:
        if len(other) < MAX_OTHER:
            other[key or "(root)"] = value
        else:
            state["truncated"] = True

    def visit(x: Any, key: str, depth: int) -> None:
        if isinstance(x, torch.Tensor):
            add_tensor(key, x)
            return
        if _is_scalar(x):
            add_other(key, _jsonable(x))
            return
        if depth > MAX_DEPTH or id(x) in seen:
            return
        seen.add(id(x))
        if isinstance(x, torch.nn.Module):
            try:
                items = x.state_dict(keep_vars=True).items()
            except Exception:  # noqa: BLE001 - a broken module: fall back to its attributes
                items = vars(x).items()
            for k, v in items:
                visit(v, _join(key, k), depth + 1)
        elif isinstance(x, Mapping):
            for k, v in x.items():
                visit(v, _join(key, k), depth + 1)
        elif isinstance(x, (list, tuple)):
            if x and all(_is_scalar(v) for v in x):
                add_other(key, [_jsonable(v) for v in x] if len(x) <= 16
                          else f"<{type(x).__name__} of {len(x)} values>")
            else:
                for i, v in enumerate(x):
                    visit(v, _join(key, i), depth + 1)
        elif hasattr(x, "shape") and hasattr(x, "dtype"):  # numpy arrays and scalars
            if tuple(x.shape) == () and hasattr(x, "item"):
                add_other(key, _jsonable(x.item()))
            else:
                add_other(key, f"<{type(x).__name__} {x.dtype} {tuple(x.shape)}>")
        elif hasattr(x, "__dict__") and not callable(x):
            for k, v in vars(x).items():
                visit(v, _join(key, k), depth + 1)
        else:
            add_other(key, f"<{type(x).__module__}.{type(x).__qualname__}>")

    visit(obj, "", 0)
    return {"type": _type_name(obj), "tensor_count": state["count"],
            "tensor_bytes": state["bytes"], "tensors": tensors, "other": other,
            "truncated": state["truncated"]}


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _is_scalar(x: Any) -> bool:
    return x is None or isinstance(x, (bool, int, float, str, bytes, complex))


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, str) and len(x) > 200:
        return x[:197] + "..."
    if isinstance(x, (bytes, complex)):
        return f"<{type(x).__name__} {len(x)}>" if isinstance(x, bytes) else str(x)
    return x


def _type_name(obj: Any) -> str:
    t = type(obj)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


if __name__ == "__main__":
    main(sys.argv)
