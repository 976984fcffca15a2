"""benchmarks/ is a package: every module imports (without running anything), none edits sys.path,
loads a script by its path or imports a private module of the plugin."""

import importlib
import pkgutil
import re

import pytest

import benchmarks
from tests.conftest import REPO

FORBIDDEN = {
    "edits sys.path": re.compile(r"sys\.path\s*(\.insert|\.append|\[|\+=|=)"),
    "loads a script by its path": re.compile(r"spec_from_file_location|runpy\.run_path"),
    "imports a private module of the plugin": re.compile(r"napari_cellprep(\.\w+)*\._\w+|from napari_cellprep[.\w]* import _"),
}


DRIVE_THE_DOCKS = {"benchmarks/loop/stall.py", "scripts/screenshots.py"}
"""They measure or photograph the docks themselves, so they set the docks' fields (their private
module); everything else goes through the engine's public modules."""


@pytest.mark.parametrize("folder", ["benchmarks", "scripts"])
def test_no_file_edits_sys_path_loads_by_path_or_imports_private_modules(folder):
    found = []
    for path in sorted((REPO / folder).rglob("*.py")):
        text, name = path.read_text(), str(path.relative_to(REPO))
        found += [
            f"{name} {what}" for what, pattern in FORBIDDEN.items()
            if pattern.search(text) and not (what.startswith("imports a private") and name in DRIVE_THE_DOCKS)
        ]
    assert not found, found


def test_every_benchmark_module_imports_without_running():
    names = [m.name for m in pkgutil.walk_packages(benchmarks.__path__, "benchmarks.")]
    assert {"benchmarks.harness.datasets", "benchmarks.harness.stats", "benchmarks.harness.report",
            "benchmarks.harness.strokes", "benchmarks.paper.reproduce", "benchmarks.loop.scribbles"} <= set(names)
    for name in names:
        module = importlib.import_module(name)
        if not name.endswith("__init__") and "harness" not in name and hasattr(module, "main"):
            assert callable(module.main)
