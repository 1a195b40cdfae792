"""Compare + suggestions on 100,000 keys (in-process, metadata only), against the bare floor.

    python benchmarks/bench_compare.py [--runs 5]

The target is a synthetic ``pttui.core.target.targets.Target`` of 100,000 keys; two
checkpoints against it:
- ``prefix``: every key under a DDP ``module.`` prefix (one step fixes it);
- ``mixed``: the prefix, plus 2,000 LayerNorm ``gamma``/``beta`` names, 500 keys
  missing, 500 unexpected extras and 100 shape mismatches;
- ``rename``: a structural rename, every ``blocks.N.`` stored as ``stages.N.`` (one
  inferred rule fixes it; no prefix strip or add does);
- ``head``: the keys as the model has them except one head tensor of another shape,
  plus 5,000 benign ``num_batches_tracked`` extras.
Timed: ``compare``; ``suggest`` (which measures each candidate step with further
compares); ``compare + suggest`` (the target); ``diagnose``; and the TUI's whole
``analyse`` (compare, diagnose, suggest and the key index). The baseline is the floor
of any comparison: two set differences and a shape check over the common keys.

Target (issue 7): compare + suggestions under 1 s.
"""

from __future__ import annotations

import gc

from common import base_args, fmt_s, header, median_time, table, verdict


def build(kind: str):
    from pttui.core.base.meta import TensorMeta
    from pttui.core.target.targets import Target

    names = [f"blocks.{i // 100}.layer.{(i // 4) % 25}.{('attn', 'mlp', 'norm', 'proj')[i % 4]}"
             for i in range(100_000)]
    expected = {}
    for i, base in enumerate(names):
        leaf = "bias" if "norm" in base and i % 8 == 2 else "weight"
        key = f"{base}.{leaf}" if f"{base}.{leaf}" not in expected else f"{base}.w{i}"
        expected[key] = TensorMeta(key, (64, 64) if "norm" not in key else (64,), "float32",
                                   "meta")
    target = Target("synthetic", {}, expected, frozenset(expected), frozenset(), {}, None,
                    "model", "synthetic 100,000 keys")
    tensors = {}
    norms = 0
    for i, (k, m) in enumerate(expected.items()):
        name = k
        if kind == "mixed":
            if i % 200 == 7:
                continue  # missing
            if "norm" in k and norms < 2000:
                name = k.replace(".weight", ".gamma").replace(".bias", ".beta")
                norms += 1
            if i % 1000 == 3:
                m = TensorMeta(k, (32, 64), m.dtype, "cpu")  # shape mismatch
        tensors["module." + name] = TensorMeta("module." + name, m.shape, m.dtype, "cpu")
    if kind == "rename":
        tensors = {}
        for k, m in expected.items():
            name = "stages." + k.removeprefix("blocks.")
            tensors[name] = TensorMeta(name, m.shape, m.dtype, "cpu")
        return tensors, target
    if kind == "head":
        tensors = {k: TensorMeta(k, m.shape, m.dtype, "cpu") for k, m in expected.items()}
        last = next(reversed(expected))
        tensors[last] = TensorMeta(last, (10, 64), "float32", "cpu")
        for j in range(5000):
            k = f"blocks.{j // 25}.layer.{j % 25}.norm.num_batches_tracked"
            tensors[k] = TensorMeta(k, (), "int64", "cpu")
        return tensors, target
    if kind == "mixed":
        for j in range(500):
            k = f"module.extra.{j}.weight"
            tensors[k] = TensorMeta(k, (8,), "float32", "cpu")
    return tensors, target


def floor(tensors, target) -> int:
    want = target.tensors
    missing = want.keys() - tensors.keys()
    unexpected = tensors.keys() - want.keys()
    bad = sum(1 for k in tensors.keys() & want.keys() if tensors[k].shape != want[k].shape)
    return len(missing) + len(unexpected) + bad


def main() -> None:
    args = base_args(__doc__.split("\n")[0]).parse_args()
    from pttui.core.repair.analysis import analyse
    from pttui.core.compare.strict import compare
    from pttui.core.repair.diagnose.diagnosis import diagnose
    from pttui.core.recipe.recipe import Recipe
    from pttui.core.repair.suggest.pipeline import suggest

    header("compare + suggest, 100,000 keys (in-process)", args.runs)
    rows, verdicts = [], []
    for kind in ("prefix", "mixed", "rename", "head"):
        tensors, target = build(kind)
        gc.collect()
        t_floor, _ = median_time(lambda: floor(tensors, target), args.runs)
        t_cmp, report = median_time(lambda: compare(tensors, target), args.runs)
        t_sug, steps = median_time(lambda: suggest(tensors, target), args.runs)
        t_both, _ = median_time(lambda: (compare(tensors, target), suggest(tensors, target)),
                                args.runs)
        t_diag, _ = median_time(lambda: diagnose(tensors, target, report, []), args.runs)
        t_all, _ = median_time(lambda: analyse_plain(analyse, Recipe, tensors, target),
                               args.runs)
        first = steps[0].title if steps else "-"
        rows.append([kind, f"{len(tensors):,}", fmt_s(t_floor), fmt_s(t_cmp), fmt_s(t_sug),
                     fmt_s(t_both), f"{t_both / t_floor:.0f}x", fmt_s(t_diag), fmt_s(t_all),
                     f"{len(steps)}: {first}"])
        verdicts.append([f"compare + suggest < 1 s ({kind})", fmt_s(t_both),
                         verdict(t_both < 1.0)])
    print(table(["checkpoint", "keys", "floor (set ops)", "compare", "suggest",
                 "compare + suggest", "vs floor", "diagnose", "TUI analyse (all)",
                 "suggestions"], rows))
    print("\n### targets\n")
    print(table(["target", "measured", "met"], verdicts))


def analyse_plain(analyse, recipe_cls, tensors, target):
    """``analysis.analyse`` on a stand-in source holding ``tensors`` as its only container."""
    from pttui.core.base.meta import Checkpoint, Container

    ckpt = Checkpoint("synthetic.pt", "torch-zip", [Container((), tensors)], ())
    return analyse(ckpt, recipe_cls(), target)


if __name__ == "__main__":
    main()
