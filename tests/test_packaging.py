"""Packaging as the napari ecosystem reads it: one version, hub metadata, tox over napari's Pythons."""

import configparser
import re
import tomllib

import napari_cellprep
from tests.conftest import REPO


def test_one_version_everywhere():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "napari_cellprep.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", napari_cellprep.__version__)
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog and f"## [{napari_cellprep.__version__}]" in changelog


def test_hub_metadata_and_tox_agree():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    classifiers = project["classifiers"]
    assert {"Framework :: napari", "Operating System :: OS Independent"} <= set(classifiers)
    assert project["license"] == "BSD-3-Clause"
    assert {"Bug Tracker", "Documentation", "Source Code", "User Support"} <= set(project["urls"])
    pythons = {c.rsplit(" ", 1)[1] for c in classifiers if re.search(r"Python :: 3\.\d+$", c)}
    assert min(pythons, key=lambda v: int(v.split(".")[1])) == project["requires-python"].lstrip(">=")
    tox = configparser.ConfigParser()
    tox.read(REPO / "tox.ini")
    assert set(re.findall(r"3\.\d+", tox["gh-actions"]["python"])) == pythons
    assert tox["testenv"]["extras"] == "testing" and "bioimageio" in str(
        project["optional-dependencies"]["testing"]
    )
    assert (REPO / ".napari" / "config.yml").is_file() and (REPO / ".napari" / "DESCRIPTION.md").is_file()
