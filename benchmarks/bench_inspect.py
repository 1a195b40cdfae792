"""``pttui inspect --json`` against the floor and torch's own loads: wall time and peak memory.

    python benchmarks/bench_inspect.py [--runs 5] [--workdir DIR] [--only big,moe]

Per input, whole processes, interleaved: pttui; the floor (a bare restricted
unpickle of data.pkl, ``floor_unpickle.py``; for the sharded set, reading each
shard's JSON header); ``torch.load(map_location="meta")``, ``torch.load(mmap=True)``
and a full ``torch.load`` (torch zips only); ``python -c "import torch"``.
Peak memory is the kernel's high-water mark of resident memory (wait4's ru_maxrss).
The ratio of CPU times (user + system, from wait4) is shown beside the wall-time ratio:
it moves less when other work shares the machine.

Targets (issue 7): the 2.5 GB file at most 1.5x the floor and at least 20x faster
than the meta load; the 50,000-key file at most 1.2x the floor; peak memory while
inspecting under 100 MiB whatever the file size.
"""

from __future__ import annotations

from common import (MIB, PY, Series, Workdir, base_args, fmt_mib, fmt_s, header, measure,
                    pttui_cmd, table, verdict)
from make_inputs import ensure

FLOOR = str(__import__("pathlib").Path(__file__).with_name("floor_unpickle.py"))
_TORCH = "import sys, torch; torch.load(sys.argv[1], weights_only=True{})"
_ST_FLOOR = ("import json, os, struct, sys\n"
             "d = os.path.dirname(sys.argv[1])\n"
             "for s in sorted(set(json.load(open(sys.argv[1]))['weight_map'].values())):\n"
             "    f = open(os.path.join(d, s), 'rb'); n, = struct.unpack('<Q', f.read(8))\n"
             "    json.loads(f.read(n))\n")
INPUTS = ("big", "moe", "keys100k", "sharded")
LABELS = {"big": "2.5 GB bf16, 1,984 keys", "moe": "MoE, 49,347 small tensors",
          "keys100k": "100,000 keys", "sharded": "sharded safetensors, 4 x 2,000 keys"}


def series_for(name: str, path: str, torch_baselines: bool) -> list[Series]:
    out = [Series("pttui inspect --json", pttui_cmd() + ["inspect", "--json", path])]
    if name == "sharded":
        out.append(Series("floor (read the shard headers)", [PY, "-c", _ST_FLOOR, path]))
        return out
    out.append(Series("floor (bare unpickle)", [PY, FLOOR, path]))
    out.append(Series("floor, gc off", [PY, "-c", "import gc, sys; gc.disable(); "
                      f"sys.path.insert(0, {str(__import__('pathlib').Path(FLOOR).parent)!r}); "
                      "import floor_unpickle as f; f.floor(sys.argv[1])", path]))
    if torch_baselines:
        out.append(Series("torch.load meta", [PY, "-c", _TORCH.format(
            ", map_location='meta'"), path]))
        out.append(Series("torch.load mmap", [PY, "-c", _TORCH.format(", mmap=True"), path]))
        out.append(Series("torch.load full", [PY, "-c", _TORCH.format(""), path]))
    return out


def main() -> None:
    p = base_args(__doc__.split("\n")[0])
    p.add_argument("--only", default=",".join(INPUTS))
    p.add_argument("--no-torch", action="store_true", help="skip the torch.load baselines")
    args = p.parse_args()
    names = [n for n in args.only.split(",") if n]
    header("pttui inspect", args.runs)
    with Workdir(args.workdir) as wd:
        paths = ensure(wd, names)
        base = measure([Series("python -c pass", [PY, "-c", "pass"]),
                        Series("python -c 'import torch'", [PY, "-c", "import torch"])],
                       args.runs)
        py, torch_import = base[0].wall, base[1].wall
        print(f"python -c pass: {fmt_s(py)}; python -c 'import torch': {fmt_s(torch_import)}\n")
        rows, mem_rows, verdicts = [], [], []
        for name in names:
            ss = measure(series_for(name, str(paths[name]), not args.no_torch), args.runs)
            by = {s.label: s for s in ss}
            pt = ss[0]
            floor = ss[1]
            row = [LABELS[name], fmt_s(pt.wall), fmt_s(floor.wall),
                   f"{pt.wall / floor.wall:.2f}x", f"{pt.cpu / floor.cpu:.2f}x"]
            gc_off = by.get("floor, gc off")
            row.append(f"{fmt_s(gc_off.wall)} ({pt.wall / gc_off.wall:.2f}x)" if gc_off else "-")
            meta = by.get("torch.load meta")
            row.append(f"{fmt_s(meta.wall)} ({meta.wall / pt.wall:.0f}x slower)" if meta else "-")
            for lab in ("torch.load mmap", "torch.load full"):
                row.append(fmt_s(by[lab].wall) if lab in by else "-")
            rows.append(row)
            mem_rows.append([LABELS[name], fmt_mib(pt.maxrss), fmt_mib(floor.maxrss)]
                            + [fmt_mib(by[lab].maxrss) if lab in by else "-"
                               for lab in ("torch.load meta", "torch.load mmap",
                                           "torch.load full")])
            ratio = pt.wall / floor.wall
            if name == "big":
                verdicts.append(["2.5 GB file <= 1.5x floor", f"{ratio:.2f}x",
                                 verdict(ratio <= 1.5)])
                if meta:
                    verdicts.append(["2.5 GB file >= 20x faster than meta load",
                                     f"{meta.wall / pt.wall:.0f}x", verdict(meta.wall / pt.wall >= 20)])
            if name == "moe":
                verdicts.append(["50,000-key file <= 1.2x floor", f"{ratio:.2f}x",
                                 verdict(ratio <= 1.2)])
            verdicts.append([f"peak memory < 100 MiB ({name})", fmt_mib(pt.maxrss),
                             verdict(pt.maxrss < 100 * MIB)])
        print("### wall time (median)\n")
        print(table(["input", "pttui", "floor", "ratio", "ratio of CPU times",
                     "floor, gc off (ratio)",
                     "torch meta (vs pttui)", "torch mmap", "torch full"], rows))
        print("\n### peak resident memory (median of max RSS)\n")
        print(table(["input", "pttui", "floor", "torch meta", "torch mmap", "torch full"],
                    mem_rows))
        print("\n### targets\n")
        print(table(["target", "measured", "met"], verdicts))


if __name__ == "__main__":
    main()
