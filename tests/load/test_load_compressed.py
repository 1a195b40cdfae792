"""A torch zip whose records another tool compressed: mmap cannot read it, so pttui
defaults it off, and explains the failure when the user forces it on."""

from __future__ import annotations

import zipfile

import pytest

from pttui.core.load import failures as lf
from pttui.core.load.sniff import sniff
from pttui.core.load import LoadPolicy, attempt_load

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def deflated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("deflated")
    plain, packed = folder / "plain.pt", folder / "deflated.pt"
    torch.save({"w": torch.arange(1000.0), "b": torch.ones(3)}, plain)
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    return plain, packed


def test_sniff_counts_compressed_records(deflated):
    plain, packed = deflated
    assert sniff(str(plain)).compressed == 0
    assert sniff(str(packed)).compressed >= 3  # data.pkl and both tensors at least


def test_default_load_of_a_compressed_zip_turns_mmap_off_and_loads(deflated):
    result = attempt_load(deflated[1], LoadPolicy(map_location="cpu"))
    assert result.ok, result.failure
    assert result.policy["mmap"] is False
    assert {t["key"]: t["shape"] for t in result.summary["tensors"]} == {"w": [1000], "b": [3]}


def test_a_plain_zip_still_defaults_to_mmap(deflated):
    result = attempt_load(deflated[0], LoadPolicy(map_location="cpu"))
    assert result.ok and result.policy["mmap"] is True


def test_forced_mmap_on_a_compressed_zip_is_explained_with_the_fix(deflated):
    result = attempt_load(deflated[1], LoadPolicy(map_location="cpu", mmap=True))
    if result.ok:  # torch may read garbage instead of failing: then it must be flagged
        assert any("compressed" in w and "garbage" in w for w in result.warnings)
        return
    assert result.kind == lf.MMAP_UNSUPPORTED
    assert "compressed" in result.failure.explanation
    assert any(f.changes == {"mmap": False} for f in result.failure.fixes)
