"""cellprep predict --instances: object labels and a measurements CSV beside the labels."""

import csv

import numpy as np
import tifffile

from napari_cellprep import cli
from napari_cellprep.engine.checkpoint import load_checkpoint
from napari_cellprep.engine.images.instances import find_instances
from napari_cellprep.engine.prediction.inference import predict


def test_predict_instances_writes_objects_and_measurements(trained_checkpoint, cells, tmp_path, capsys):
    image = cells((96, 96))
    tifffile.imwrite(tmp_path / "disks.tif", image)
    out = tmp_path / "out"
    argv = ["predict", str(tmp_path / "disks.tif"), "--out", str(out), "--model", str(trained_checkpoint)]
    assert cli.main([*argv, "--instances", "--min-size", "20", "--device", "cpu"]) == 0
    labels = tifffile.imread(out / "disks_labels.tif")
    objects = tifffile.imread(out / "disks_instances.tif")
    expected = find_instances(
        predict(load_checkpoint(trained_checkpoint), image).labels, ["b", "c"], min_size=20
    )
    np.testing.assert_array_equal(objects, expected.labels)
    assert objects.max() >= 1 and (labels[objects > 0] == 1).all()
    with open(out / "disks_measurements.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == objects.max() and {row["class"] for row in rows} == {"colony"}
    for row in rows:
        inside = image[objects == int(row["label"])]
        assert int(float(row["area"])) == inside.size >= 20
        assert abs(float(row["intensity_mean"]) - inside.mean()) < 1e-6 * inside.mean()
        assert 0.0 <= float(row["confidence"]) <= 1.0
    capsys.readouterr()
    assert cli.main([*argv, "--instances"]) == 1  # never overwritten silently
    assert "already exists" in capsys.readouterr().err
    assert cli.main([*argv, "--instances", "--boundary-class", "nucleus", "--overwrite"]) == 1
    assert "not a class" in capsys.readouterr().err
