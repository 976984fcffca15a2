"""The Segment dock's objects layer with its measurements, and the version both docks show."""

import pytest

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_cellprep import __version__  # noqa: E402
from napari_cellprep._widgets.about import version_text  # noqa: E402

pytestmark = pytest.mark.napari
PLUGIN = "napari-cellprep"


def test_objects_layer_carries_the_measurements(
    make_napari_viewer, qtbot, registry, trained_checkpoint, cells, tmp_path
):
    viewer = make_napari_viewer()
    image = cells()
    viewer.add_image(image, name="cells")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    widget.select_model(registry.add_file(trained_checkpoint))
    assert widget._boundary.choices == ("auto", "none", "background", "colony")
    for box in widget._show.values():  # the ensemble alone, and the objects
        box.value = False
    assert widget._object_options.native.isHidden()  # its options show once "objects" is ticked
    widget._objects.value = True
    assert not widget._object_options.native.isHidden()
    widget._min_size.value = 20
    widget.run()
    qtbot.waitUntil(lambda: widget.controls.worker is None, timeout=30_000)

    layer = viewer.layers["cells | objects"]
    names = [layer.name for layer in viewer.layers]
    assert names.index("cells | objects") == names.index("cells | ensemble") + 1
    assert isinstance(layer, napari.layers.Labels) and layer.data.max() >= 1
    features = layer.features
    assert list(features["index"]) == list(features["label"]) == list(range(1, layer.data.max() + 1))
    assert set(features["class"]) == {"colony"} and (features["area"] >= 20).all()
    for row in features.itertuples():
        inside = image[layer.data == row.label]
        assert row.area == inside.size and row.intensity_mean == pytest.approx(inside.mean())
        assert 0 <= row.confidence <= 1
    assert widget._save_table.enabled
    path = widget.save_measurements(tmp_path / "objects.csv")
    lines = path.read_text().splitlines()
    assert lines[0].startswith("label,class,class_index,area,") and len(lines) == len(features) + 1
    assert widget.save_measurements(path) is None and "already exists" in widget.controls.status.value


def test_both_docks_show_the_version(make_napari_viewer, registry):
    viewer = make_napari_viewer()
    for name in ("Segment", "Train"):
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
        row = widget.controls[0]  # the Run/Stop row
        shown = [w for w in row if getattr(w, "value", None) == version_text()]
        assert len(shown) == 1 and __version__ in shown[0].value and __version__ in shown[0].tooltip
