"""The model built anew with the file's class count: when only the classifier differs,
``head_classes`` reads the two counts from a report and ``rebuild`` builds the model
with the file's (on meta, cached). The wizard's step and the suggestion share them."""

from __future__ import annotations

from typing import Any

from pttui.core.compare.strict import Report


def head_classes(report: Report) -> tuple[int, int] | None:
    """(checkpoint, model) class counts when only the classifier's output size differs:
    every shape mismatch sits in at most two of the model's last modules and differs in
    its first dimension only, by one and the same count. Read from the report, the same
    rule the diagnosis words as "only the classifier differs: 10 vs 1000 classes"."""
    mism = report.shape_mismatch
    if not mism:
        return None
    modules = {m.key.rpartition(".")[0] for m in mism}
    order = list(dict.fromkeys(k.rpartition(".")[0] for k in report.matched + report.missing
                               + [m.key for m in mism]))
    if len(modules) > 2 or not modules <= set(order[-max(2, len(modules)):]):
        return None
    outs = {(m.checkpoint_shape[0], m.model_shape[0]) for m in mism
            if m.checkpoint_shape and m.model_shape}
    same_rest = all(len(m.checkpoint_shape) == len(m.model_shape) and
                    m.checkpoint_shape[1:] == m.model_shape[1:] for m in mism)
    if len(outs) != 1 or not same_rest:
        return None
    return outs.pop()


_REBUILT: dict[str, Any] = {}  # spec + args -> Target (or None: it did not build)


def rebuild(spec: str, args: dict[str, Any]) -> Any:
    """The model built with other arguments (on meta), or None when it does not build."""
    from pttui.core.target.targets import load_target

    key = spec + "\0" + repr(sorted(args.items(), key=lambda kv: kv[0]))
    if key not in _REBUILT:
        if len(_REBUILT) >= 8:
            _REBUILT.pop(next(iter(_REBUILT)))
        try:
            _REBUILT[key] = load_target(spec, args)
        except Exception:  # noqa: BLE001 - a model without that argument: no such step
            _REBUILT[key] = None
    return _REBUILT[key]
