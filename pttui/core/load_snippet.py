"""The first lines of a recipe's Python snippet: load the checkpoint into ``sd`` the way
its format needs.

``torch.load(PATH, weights_only=True)`` only reads a plain torch.save state_dict.
The format comes from the checkpoint itself when its path exists (read by pttui,
metadata only, nothing run), else from its name: a ``.safetensors`` file, a sharded
set's ``*.index.json`` (safetensors or ``.bin`` shards), a DCP folder, a file whose
pickle also holds plain-data classes (allow-listed by name for
``torch.serialization.safe_globals``), a whole pickled model (``torch.save(model)``:
only ``weights_only=False`` rebuilds it, so the snippet stops until the user says
they trust the file), a TorchScript archive, and a file with code in its pickle
(the snippet refuses it: export it with ``pttui fix`` and load that).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from pttui.core import formats
from pttui.core.meta import Checkpoint, ReadError

_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
_PLAIN_DATA = ("argparse.", "collections.", "numpy.", "omegaconf.", "torch.")
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
    from pttui.core.reader import open_checkpoint

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
        _refuse(out, ckpt.globals.dangerous)
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
    elif kind == "module":
        _whole_model(out, ckpt, where)
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
    plain = [n for n in names if n.startswith(_PLAIN_DATA)]
    other = [n for n in names if n not in plain]
    out.need("importlib")
    out.lines.append(f"# the file also pickles {', '.join(names)}; torch.load(weights_only=True) "
                     "rebuilds them once they are allow-listed by name")
    if other:
        mods = sorted({n.rsplit(".", 1)[0] for n in other})
        out.lines.append(f"# importing {', '.join(mods)} runs that module's code: "
                         "do it only if you trust it")
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


def _whole_model(out: Loading, ckpt: Checkpoint, where: Sequence[str]) -> None:
    classes = [n for n in ckpt.globals.blocked if not n.startswith("torch.")]
    needs = f" (its classes: {_shown(classes)})" if classes else ""
    out.lines += [f"# PATH is a whole pickled model{needs}, not a state_dict: only",
                  "# torch.load(weights_only=False) rebuilds it, which imports the model's code",
                  "# and runs whatever the file's pickle says. Do it only for a file you trust;",
                  "# otherwise `pttui fix` writes its weights without running it: load that "
                  "file instead.",
                  "TRUST_PICKLE = False  # set to True to load this file with weights_only=False",
                  "if not TRUST_PICKLE:",
                  "    raise RuntimeError(f'{PATH} is a whole pickled model; set TRUST_PICKLE = "
                  "True only if you trust it')",
                  f"sd = torch.load(PATH, {_CPU}, weights_only=False){_index(where)}"
                  ".state_dict()"]


def _refuse(out: Loading, dangerous: Sequence[str]) -> None:
    out.lines += [f"# PATH's pickle calls {_shown(dangerous, 3)}: code that runs on loading. "
                  "torch.load",
                  "# refuses it (weights_only=True) or runs it (weights_only=False). Export its "
                  "weights",
                  "# with `pttui fix PATH ... -o weights.safetensors` (nothing is run) and load "
                  "that file.",
                  "raise RuntimeError(f'{PATH} holds code in its pickle; export its weights "
                  "with pttui fix and load the export')"]

