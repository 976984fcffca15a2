"""Objects and measurements on maps with known areas and intensities."""

import numpy as np
import pytest

from napari_cellprep.engine.errors import OutputExistsError, SettingsError
from napari_cellprep.engine.images.instances import find_instances, measure_instances, write_measurements

NAMES = ["background", "cell"]


def two_squares():
    labels = np.zeros((40, 50), np.uint8)
    labels[5:15, 5:15] = 1  # 100 px
    labels[20:24, 30:35] = 1  # 20 px
    labels[35, 45:47] = 1  # a 2 px speck
    image = np.full(labels.shape, 7.0)
    image[5:15, 5:15] = 50.0
    image[20:24, 30:35] = np.arange(5) * 5.0 + 190.0  # 190..210 along x: mean 200
    return labels, image


def test_areas_intensities_and_confidence():
    labels, image = two_squares()
    found = find_instances(labels, NAMES, min_size=3)
    assert found.labels.max() == 2 and list(found.classes) == [1, 1]
    disagreement = np.zeros(labels.shape, np.float32)
    disagreement[5:15, 5:15] = 0.25
    table = measure_instances(found, image, disagreement)
    assert list(table["label"]) == [1, 2] and list(table["class"]) == ["cell", "cell"]
    assert list(table["area"]) == [100, 20]
    np.testing.assert_allclose(table["intensity_mean"], [50, 200])
    np.testing.assert_allclose(table["intensity_min"], [50, 190])
    np.testing.assert_allclose(table["intensity_max"], [50, 210])
    np.testing.assert_allclose(table["centroid-0"], [9.5, 21.5])
    np.testing.assert_allclose(table["centroid-1"], [9.5, 32])
    assert [table[f"bbox-{i}"][1] for i in range(4)] == [20, 30, 24, 35]
    np.testing.assert_allclose(table["confidence"], [0.75, 1.0])
    assert find_instances(labels, NAMES).labels.max() == 3  # the speck is an object without min_size


def test_boundary_class_splits_by_watershed():
    names = ["cell interior", "membrane"]  # as isbi2012-membrane: the boundary is found by name
    labels = np.ones((30, 41), np.uint8)  # membrane everywhere ...
    labels[2:28, 2:20] = 0  # ... but two cells
    labels[2:28, 21:39] = 0
    found = find_instances(labels, names)
    assert found.labels.max() == 2 and list(found.classes) == [0, 0]
    assert (found.labels > 0).all()  # every membrane pixel joined its nearest cell
    areas = np.bincount(found.labels.ravel())[1:]
    assert abs(int(areas[0]) - int(areas[1])) <= 30
    plain = find_instances(labels, names, boundary_class=None, objects=["cell interior"])
    assert list(np.bincount(plain.labels.ravel())[1:]) == [26 * 18, 26 * 18]
    with pytest.raises(SettingsError, match="not a class"):
        find_instances(labels, names, boundary_class="edges")


def test_stack_and_colour_channels(tmp_path):
    labels, image = two_squares()
    found = find_instances(np.stack([labels, labels]), NAMES, min_size=3)
    assert (
        found.labels.max() == 4
        and found.labels[1].min() == 0
        and set(np.unique(found.labels[1])) == {0, 3, 4}
    )
    rgb = np.stack([image, 2 * image, 3 * image], axis=-1)
    table = measure_instances(found, np.stack([rgb, rgb]), rgb=True)
    assert list(table["plane-0"]) == [0, 0, 1, 1]
    np.testing.assert_allclose(table["intensity_mean-2"], [150, 600, 150, 600])
    path = write_measurements(tmp_path / "m.csv", table)
    lines = path.read_text().splitlines()
    assert lines[0].startswith("label,class,class_index,plane-0,area,") and len(lines) == 5
    with pytest.raises(OutputExistsError):
        write_measurements(path, table)
