"""The first lines of a recipe's Python snippet: load the checkpoint into ``sd`` the way
its format needs.

``torch.load(PATH, weights_only=True)`` only reads a plain torch.save state_dict.
The format comes from the checkpoint itself when its path exists (read by pttui,
metadata only, nothing run), else from its name: a ``.safetensors`` file, a sharded
set's ``*.index.json`` (safetensors or ``.bin`` shards), a DCP folder, a file whose
pickle also holds plain-data classes on pttui's curated list (allow-listed by name for
``torch.serialization.safe_globals``), a TorchScript archive, and a file whose pickle
needs any other global: a whole pickled model (``torch.save(model)``) or code. Only
``weights_only=False`` loads those, which runs that code, so the snippet refuses them:
``pttui fix`` exports their weights without running anything, and the snippet loads that.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from pttui.core.read import formats
from pttui.core.base.meta import Checkpoint, ReadError

_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
_CPU = "map_location='cpu'"


@dataclass
class Loading:
    """Lines that leave the selected state_dict in ``sd``, and the modules they use."""

    imports: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def need(self, *modules: str) -> None:
        self.imports += [m for m in modules if m not in self.imports]


def _index(path: Sequence[str]) -> str:
    return "".join(f"[{p}]" if p.isascii() and p.isdigit() else f"[{p!r}]" for p in path)


def _shown(names: Sequence[str], most: int = 4) -> str:
    """Names from the file, safe inside a comment (no newline gets out)."""
    text = ", ".join(n if _NAME.match(n) else ascii(n) for n in names[:most])
    return text + (", ..." if len(names) > most else "")


def _open(path: str | None) -> Checkpoint | None:
    if not path or not os.path.exists(path):
        return None
    from pttui.core.read.reader import open_checkpoint

    try:
        return open_checkpoint(path)
    except ReadError:
        return None


def load_lines(path: str | None, container: tuple[str, ...] | None) -> Loading:
    """``sd = ...`` for ``path`` and the recipe's ``container`` (None: the reader's pick)."""
    out = Loading()
    ckpt = _open(path)
    if ckpt is None:
        out.lines.append(f"PATH = {path!r}" if path else
                         "PATH = ...  # the checkpoint to load")
        _by_name(out, path or "", container or ())
        return out
    if path and os.path.isdir(path) and ckpt.format != formats.DCP:  # DeepSpeed: 'latest'
        out.lines.append(f"# {ascii(os.path.basename(path))}/latest names this file")
        path = ckpt.path
    out.lines.append(f"PATH = {path!r}")
    chosen = ckpt.container(container) if container is not None else ckpt.container()
    where = tuple(container if container is not None else (ckpt.selected or ()))
    kind = chosen.kind if chosen is not None else "state_dict"
    if ckpt.globals.dangerous:
        _refuse(out, ckpt.globals.dangerous, whole_model=kind == "module")
    elif ckpt.format == formats.SAFETENSORS:
        out.need("safetensors.torch")
        out.lines.append("sd = safetensors.torch.load_file(PATH)")
    elif ckpt.format == formats.SHARDED:
        _sharded(out, ckpt.shards)
    elif ckpt.format == formats.DCP:
        _dcp(out)
    elif kind == "torchscript" or ckpt.format == "torchscript":
        out.lines.append(f"scripted = torch.jit.load(PATH, {_CPU})  # a TorchScript archive")
        out.lines += [f"scripted = getattr(scripted, {p!r})" for p in where]
        out.lines.append("sd = scripted.state_dict()")
    else:
        _torch_load(out, ckpt.globals.blocked, where)
    return out


def _by_name(out: Loading, path: str, container: tuple[str, ...]) -> None:
    out.lines.append("# (the checkpoint was not found when this was written: its format "
                     "is taken from its name)")
    if path.endswith(".index.json"):
        _sharded(out, ["x.safetensors" if "safetensors" in os.path.basename(path) else "x.bin"])
    elif path.endswith(".safetensors"):
        out.need("safetensors.torch")
        out.lines.append("sd = safetensors.torch.load_file(PATH)")
    else:
        _torch_load(out, [], container)


def _torch_load(out: Loading, blocked: Sequence[str], where: Sequence[str]) -> None:
    load = f"torch.load(PATH, {_CPU}, weights_only=True)"
    names = [n for n in blocked if _NAME.match(n)]
    if not names:
        out.lines.append(f"sd = {load}{_index(where)}")
        return
    out.need("importlib")
    out.lines.append(f"# the file also pickles {', '.join(names)}: data classes that "
                     "torch.load(weights_only=True)")
    out.lines.append("# rebuilds once they are allow-listed by name")
    pairs = [tuple(n.rsplit(".", 1)) for n in names]
    out.lines += ["allowed = [getattr(importlib.import_module(module), name)",
                  f"           for module, name in {pairs!r}]"]
    if "numpy.dtype" in names:  # numpy.dtype('f8') is a numpy.dtypes.Float64DType
        out.need("numpy")
        out.lines.append("allowed += [type(numpy.dtype(c)) for c in numpy.typecodes['All']]")
    out.lines += ["with torch.serialization.safe_globals(allowed):",
                  f"    sd = {load}{_index(where)}"]


def _sharded(out: Loading, shards: Sequence[str]) -> None:
    safetensors = bool(shards) and all(s.endswith(".safetensors") for s in shards)
    out.need("json", "os")
    read = ("safetensors.torch.load_file(os.path.join(folder, shard))" if safetensors else
            f"torch.load(os.path.join(folder, shard), {_CPU}, weights_only=True)")
    if safetensors:
        out.need("safetensors.torch")
    out.lines += ["with open(PATH, encoding='utf-8') as f:  # a sharded set's index",
                  "    shards = sorted(set(json.load(f)['weight_map'].values()))",
                  "folder = os.path.dirname(PATH)",
                  "sd = {}",
                  "for shard in shards:",
                  f"    sd.update({read})"]


def _dcp(out: Loading) -> None:
    out.need("torch.distributed.checkpoint as dcp")
    out.lines += ["# a torch.distributed.checkpoint folder; torch reads its .metadata with "
                  "pickle: only for a folder you trust",
                  "reader = dcp.FileSystemReader(PATH)",
                  "sd = {key: torch.empty(m.size, dtype=m.properties.dtype)",
                  "      for key, m in reader.read_metadata().state_dict_metadata.items()",
                  "      if isinstance(m, dcp.TensorStorageMetadata)}",
                  "dcp.load(sd, storage_reader=reader, no_dist=True)"]


def _refuse(out: Loading, dangerous: Sequence[str], whole_model: bool = False) -> None:
    what = ("is a whole pickled model: torch.load rebuilds it only with weights_only=False, "
            "which runs the code of its classes" if whole_model else
            "calls code that runs on loading: torch.load refuses it (weights_only=True) or "
            "runs it (weights_only=False)")
    out.lines += [f"# PATH {what} ({_shown(dangerous, 3)}).",
                  "# Export its weights with `pttui fix PATH ... -o weights.safetensors` "
                  "(nothing is run) and load that file.",
                  "raise RuntimeError(f'{PATH} "
                  + ("is a whole pickled model" if whole_model else "holds code in its pickle")
                  + "; export its weights with pttui fix and load the export')"]
