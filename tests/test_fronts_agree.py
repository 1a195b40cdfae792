"""One file and one model get the same verdict and the same first step in the CLI
(`pttui check --json`), the shell (`check`), the TUI's Report and its guided fix-up:
all four read the state through ``repair.analysis.analyse``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pttui.commands import Context, run_line
from tests.tui.conftest import make_app, settle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(ROOT, "sample_checkpoints")
SQUEEZE = "torchvision:squeezenet1_1"
VIT = os.path.join(SAMPLES, "targets.py") + ":tiny_vit"
CASES = [("squeezenet1_1.pt", SQUEEZE), ("squeezenet1_1_dataparallel.pt", SQUEEZE),
         ("squeezenet1_1_compiled.pt", SQUEEZE), ("squeezenet1_1_finetuned_10cls.pt", SQUEEZE),
         ("tiny_vit.safetensors", VIT), ("tiny_vit_cuda.pt", VIT), ("tiny_vit_dcp", VIT),
         ("tiny_vit_legacy.pt", VIT), ("tiny_vit_lightning.ckpt", VIT),
         ("tiny_vit_optimizer_only.pt", VIT), ("tiny_vit_renamed.pt", VIT),
         ("tiny_vit_sharded/model.safetensors.index.json", VIT),
         ("tiny_vit_sharded_bin/pytorch_model.bin.index.json", VIT),
         ("tiny_vit_training_state.pt", VIT), ("malicious.pt", VIT)]


def counts(doc: dict) -> tuple:
    return (doc["matched"], len(doc["missing"]), len(doc["unexpected"]),
            len(doc["shape_mismatch"]), len(doc["accepted_missing"]), doc["strict_ok"],
            tuple(doc["coverage"]["params"]))


def of_report(report) -> tuple:  # noqa: ANN001 - a Report
    return counts(report.to_json())


@pytest.fixture(scope="module")
def old_batchnorm(tmp_path_factory):
    """resnet18 saved by DataParallel before BatchNorm counted batches (version 1, no
    ``num_batches_tracked``): only the ``_metadata`` says those keys may be absent."""
    import collections

    import torch
    import torchvision

    sd = torchvision.models.resnet18(weights=None).state_dict()
    meta = sd._metadata  # type: ignore[attr-defined]
    out = collections.OrderedDict((f"module.{k}", v) for k, v in sd.items()
                                  if not k.endswith("num_batches_tracked"))
    out._metadata = collections.OrderedDict(  # type: ignore[attr-defined]
        (f"module.{k}" if k else "module", dict(v, version=1) if "bn" in k or
         "downsample.1" in k else v) for k, v in meta.items())
    path = tmp_path_factory.mktemp("old_bn") / "resnet18_dp_old_bn.pt"
    torch.save(out, path)
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("name,spec", CASES + [("old batchnorm", "torchvision:resnet18")],
                         ids=[c[0].split("/")[0] for c in CASES] + ["resnet18_old_bn"])
async def test_every_front_gives_the_same_analysis(name, spec, request):
    path = (request.getfixturevalue("old_batchnorm") if name == "old batchnorm"
            else os.path.join(SAMPLES, name))
    cli = subprocess.run([sys.executable, "-m", "pttui.cli", "check", path, "--model", spec,
                          "--json"], capture_output=True, text=True, timeout=120)
    assert cli.returncode in (0, 1), cli.stderr
    doc = json.loads(cli.stdout)
    cli_first = doc["suggestions"][0]["title"] if doc["suggestions"] else None

    ctx = Context()
    for line in (f"open {path}", f"model {spec}"):
        assert run_line(ctx, line).status == "ok", line
    shell = run_line(ctx, "check")
    shell_first = shell.data["suggestions"][0]["title"] if shell.data["suggestions"] else None
    assert counts(shell.data) == counts(doc), "the shell and the CLI disagree"
    assert shell_first == cli_first

    app = make_app(path, model=spec)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        main = app.screen_stack[-1]
        a = main.analysis
        assert a is not None and a.report is not None
        assert of_report(a.report) == counts(doc), "the TUI's Report and the CLI disagree"
        assert (a.suggestions[0].title if a.suggestions else None) == cli_first
        from pttui.core.repair.guide import next_step

        s = main.session
        step = next_step(s.source, s.recipe, s.target, set())  # what the wizard shows first
        if step.before is not None:
            assert of_report(step.before) == counts(doc), "the wizard and the CLI disagree"
