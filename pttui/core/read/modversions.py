"""The ``_metadata`` a whole pickled model's ``state_dict()`` would carry, without running it.

``nn.Module.state_dict()`` records ``{'version': module._version}`` under every
module's dotted prefix (``''`` for the root); ``load_state_dict`` hands each module
its version, and versioned modules (BatchNorm: 2, torchvision's MLPBlock: 2, ...)
migrate older layouts by it. ``_version`` is a class attribute, so a pickle names
only the class: the versions of torch's and torchvision's classes are listed here
(a test compares the list with the installed packages), an instance that carries
its own ``_version`` keeps it, and any other class has ``nn.Module``'s 1. Nothing
named in the file is imported.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

from pttui.core.read import containers as ct
from pttui.core.read import formats
from pttui.core.base.meta import Checkpoint, ReadError, TensorMeta

# module -> {class: _version} for every torch / torchvision nn.Module whose _version is
# not nn.Module's 1 (torch 2.14, torchvision 0.29; tests/test_export.py checks them)
_AO = "torch.ao.nn.intrinsic."
_OBS = {n: 3 for n in ("HistogramObserver", "MinMaxObserver", "MovingAverageMinMaxObserver",
                       "MovingAveragePerChannelMinMaxObserver", "PerChannelMinMaxObserver",
                       "UniformQuantizationObserverBase")}
VERSIONS: dict[str, dict[str, int]] = {
    "torch.nn.modules.batchnorm": dict.fromkeys(
        ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LazyBatchNorm1d", "LazyBatchNorm2d",
         "LazyBatchNorm3d", "SyncBatchNorm", "_BatchNorm", "_LazyNormBase", "_NormBase"), 2),
    "torch.nn.modules.instancenorm": dict.fromkeys(
        ("InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "LazyInstanceNorm1d",
         "LazyInstanceNorm2d", "LazyInstanceNorm3d", "_InstanceNorm"), 2),
    _AO + "qat.modules.conv_fused": dict.fromkeys(
        ("ConvBn1d", "ConvBn2d", "ConvBn3d", "ConvBnReLU1d", "ConvBnReLU2d", "ConvBnReLU3d",
         "_ConvBnNd"), 2),
    _AO + "quantized.dynamic.modules.linear_relu": {"LinearReLU": 4},
    _AO + "quantized.modules.bn_relu": {"BNReLU2d": 2, "BNReLU3d": 2},
    _AO + "quantized.modules.linear_relu": {"LinearLeakyReLU": 3, "LinearReLU": 3,
                                            "LinearTanh": 3},
    "torch.ao.nn.quantized.dynamic.modules.linear": {"Linear": 4},
    "torch.ao.nn.quantized.dynamic.modules.rnn": {"GRU": 2, "LSTM": 2, "RNNBase": 2},
    "torch.ao.nn.quantized.modules.batchnorm": {"BatchNorm2d": 2, "BatchNorm3d": 2,
                                                "_BatchNorm": 2},
    "torch.ao.nn.quantized.modules.linear": {"Linear": 3, "LinearPackedParams": 3},
    "torch.ao.nn.quantized.modules.normalization": {"InstanceNorm1d": 2, "InstanceNorm2d": 2,
                                                    "InstanceNorm3d": 2},
    "torch.ao.quantization.observer": _OBS,
    "torchvision.models._utils": {"IntermediateLayerGetter": 2},
    "torchvision.models.densenet": {"_DenseBlock": 2},
    "torchvision.models.detection.mask_rcnn": {"MaskRCNNHeads": 2},
    "torchvision.models.detection.retinanet": {"RetinaNetClassificationHead": 2,
                                               "RetinaNetRegressionHead": 2},
    "torchvision.models.detection.rpn": {"RPNHead": 2},
    "torchvision.models.mnasnet": {"MNASNet": 2},
    "torchvision.models.quantization.mobilenetv3": {"QuantizableSqueezeExcitation": 2},
    "torchvision.models.vision_transformer": {"MLPBlock": 2},
    "torchvision.ops.feature_pyramid_network": {"FeaturePyramidNetwork": 2},
}
_MAX_MODULES = 1_000_000


def class_version(qualname: str) -> int:
    """``_version`` of the class named ``module.Class`` (1 when pttui does not know it)."""
    module, _, name = qualname.rpartition(".")
    return VERSIONS.get(module, {}).get(name, 1)


_module_state = ct._module_state  # the one test of "a pickled nn.Module" (containers.py)


def module_metadata(node: Any) -> OrderedDict[str, dict[str, int]] | None:
    """``node.state_dict()._metadata`` for a pickled module node, in torch's order;
    None when ``node`` is no module."""
    if _module_state(node) is None:
        return None
    out: OrderedDict[str, dict[str, int]] = OrderedDict()
    stack: list[tuple[str, Any, tuple[int, ...]]] = [("", node, ())]
    while stack:
        prefix, mod, above = stack.pop()
        st = _module_state(mod)
        if st is None or id(mod) in above:
            continue  # not a module (None: a removed child), or a module inside itself
        if len(out) >= _MAX_MODULES:
            raise ReadError(f"more than {_MAX_MODULES:,} modules; refusing to list them")
        own = st.get("_version")
        out.setdefault(prefix, {"version": own if type(own) is int
                                else class_version(type(mod).qualname)})
        children = [(k, v) for k, v in st["_modules"].items() if isinstance(k, str)]
        for name, sub in reversed(children):
            stack.append((f"{prefix}.{name}" if prefix else name, sub, above + (id(mod),)))
    return out


def read_module_metadata(ckpt: Checkpoint) -> OrderedDict[str, dict[str, int]] | None:
    """The module versions of ``ckpt``'s selected container when it is a pickled
    ``nn.Module`` (``torch.save(model)``): the pickle is read again by pttui's
    restricted unpickler, nothing in it runs. None for anything else."""
    chosen = ckpt.container()
    if chosen is None or chosen.kind != "module" or ckpt.format not in (formats.ZIP,
                                                                        formats.LEGACY):
        return None
    from pttui.core.read.torchfile import read_legacy, read_zip
    from pttui.core.read.zipindex import ZipIndex

    size = os.path.getsize(ckpt.path)
    with open(ckpt.path, "rb") as f:
        un = (read_zip(f, ZipIndex(f, size, ckpt.path), ckpt.path, None)
              if ckpt.format == formats.ZIP else read_legacy(f, size, ckpt.path, None))
    node = un.root
    for part in chosen.path:
        node = dict(ct.children(node)).get(part)
    return module_metadata(node)


def renamed(metadata: dict[str, Any], items: list[tuple[str, TensorMeta, TensorMeta]]
            ) -> OrderedDict[str, Any]:
    """``metadata`` with each module prefix moved the way the export renames the keys
    below it: ``features.0.weight`` written as ``backbone.features.0.weight`` moves
    ``features.0`` (and ``features``, and the root ``''``) under ``backbone``. A module
    with no tensor left below it follows its parent; nothing to go by: left as is."""
    moved: dict[str, str] = {}
    for name, _meta, orig in items:
        parts = orig.key.split(".")
        for i in range(len(parts) - 1, -1, -1):
            prefix, rest = ".".join(parts[:i]), ".".join(parts[i:])
            if prefix in moved or rest == "":
                continue
            if name == rest:
                moved[prefix] = ""
            elif name.endswith("." + rest):
                moved[prefix] = name[:-len(rest) - 1]
    out: OrderedDict[str, Any] = OrderedDict()
    for prefix, value in metadata.items():
        out.setdefault(_move(prefix, moved), value)
    return out


def _move(prefix: str, moved: dict[str, str]) -> str:
    if prefix in moved:
        return moved[prefix]
    parts = prefix.split(".") if prefix else []
    for i in range(len(parts) - 1, -1, -1):
        above = ".".join(parts[:i])
        if above in moved:
            new = moved[above]
            tail = ".".join(parts[i:])
            return f"{new}.{tail}" if new else tail
    return prefix
