"""docs/api.md's examples run as written, in order, in one namespace."""

import re

from tests.conftest import REPO


def python_blocks(path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)


def test_api_examples_run(tmp_path, monkeypatch, capsys):
    blocks = python_blocks(REPO / "docs" / "api.md")
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), namespace)  # noqa: S102
    assert (tmp_path / "measurements.csv").read_text().startswith("label,class,class_index,")
    assert (tmp_path / "tuned.cellprep").is_file()
    assert namespace["segmented"].shape == namespace["images"][0].shape
