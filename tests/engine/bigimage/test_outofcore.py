"""Out-of-core prediction into zarr: equal to the in-memory tiled prediction, streamed statistics,
lazy inputs (TIFF, zarr, OME-Zarr), resume, and a store that never looks complete too early."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from napari_cellprep import cli
from napari_cellprep.engine.bigimage.outofcore import predict_to_zarr_iter
from napari_cellprep.engine.checkpoint import save_checkpoint
from napari_cellprep.engine.errors import ImageReadError, OutputError, OutputExistsError
from napari_cellprep.engine.events import drive
from napari_cellprep.engine.images import normalize
from napari_cellprep.engine.images.normalize import Normalization, channel_stats, streamed_channel_stats
from napari_cellprep.engine.images.planes import LazyPlanes
from napari_cellprep.engine.images.sources import ImageSource, open_image
from napari_cellprep.engine.prediction.inference import OUTPUTS, predict
from tests.engine.prediction.test_inference import textured, tiny_model

TILING = {"tile": 128, "overlap": 32, "batch_size": 3}


@pytest.fixture(scope="module")
def model():
    return tiny_model("cellprep")


@pytest.fixture(scope="module")
def model_file(model, tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("m") / "tiny.cellprep", model.model, model.info)


def image(shape=(300, 333), seed=0) -> np.ndarray:
    return (textured(shape, seed) * 4000 + 100).astype(np.uint16)


def to_zarr(loaded, array, out, block=96, **options):
    return drive(predict_to_zarr_iter(loaded, [("", ImageSource(array, "x"), None)], out, block=block,
                                      **TILING, **options))


def assert_argmax_equal_off_ties(actual, expected, probabilities, class_axis, tie=1e-4):
    """Labels equal wherever the top two class probabilities differ by more than ``tie``.

    Blocks sum their overlapping tiles in another order than one in-memory pass, so probabilities
    agree to float rounding (asserted separately) and a pixel on an exact tie may take either class.
    """
    top2 = np.sort(probabilities, axis=class_axis)
    margin = np.take(top2, -1, axis=class_axis) - np.take(top2, -2, axis=class_axis)
    decided = margin > tie
    assert decided.mean() > 0.99  # the ties excused are a handful of pixels, not the comparison
    assert np.array_equal(actual[decided], expected[decided])


def test_blocks_equal_the_in_memory_tiled_prediction(model, tmp_path):
    stack = image((2, 300, 333))  # two planes, 4 × 4 blocks each, sides not multiples of anything
    ref = predict(model, stack, outputs=OUTPUTS, **TILING)
    root = zarr.open_group(to_zarr(model, stack, tmp_path / "o.zarr", outputs=OUTPUTS), mode="r")
    assert root["done"].shape == (2, 4, 4) and root["labels"].chunks == (1, 96, 96)
    for name in ("probabilities", "filters", "translated", "branch_probabilities", "disagreement"):
        np.testing.assert_allclose(root[name][...], getattr(ref, name), atol=1e-5, err_msg=name)
    assert_argmax_equal_off_ties(root["labels"][...], ref.labels, ref.probabilities, class_axis=1)
    assert_argmax_equal_off_ties(root["branch_labels"][...], ref.branch_labels, ref.branch_probabilities,
                                 class_axis=2)
    assert 0.05 < ref.labels.mean() < 0.95  # both classes occur: the comparison means something


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_streamed_statistics_equal_the_whole_plane_sample(monkeypatch, method):
    monkeypatch.setattr(normalize, "MAX_STAT_SAMPLES", 997)  # force the strided sample
    plane = np.random.default_rng(1).normal(1000, 300, (2, 171, 203)).astype(np.float32)
    norm = Normalization(method)
    streamed = streamed_channel_stats(lambda a, b: plane[:, a:b], 171, 203, norm, rows_per_read=16)
    assert streamed == channel_stats(plane, norm)


def test_lazy_inputs_tiff_zarr_and_ome_zarr(tmp_path):
    from ome_zarr.writer import write_image as write_ome

    array = image((2, 64, 80))
    tifffile.imwrite(tmp_path / "plain.tif", array)  # uncompressed: memory-mapped
    tifffile.imwrite(tmp_path / "tiled.tif", array, tile=(32, 32), compression="zlib")  # read by tiles
    zarr.create_array(tmp_path / "a.zarr", data=array, chunks=(1, 32, 32))
    write_ome(array, zarr.open_group(tmp_path / "ome.zarr", mode="w"), axes="zyx",
              scale={"z": 2.0, "y": 0.5, "x": 0.5}, scale_factors=[2])
    for name in ("plain.tif", "tiled.tif", "a.zarr", "ome.zarr"):
        source = open_image(tmp_path / name)
        assert not isinstance(source.array, np.ndarray) or isinstance(source.array, np.memmap), name
        assert np.array_equal(LazyPlanes(source.array, 1).read(1, slice(5, 40), slice(3, 77))[0], array[1, 5:40, 3:77])
    ome = open_image(tmp_path / "ome.zarr")
    assert ome.axes == ["z", "y", "x"] and ome.scale == [2.0, 0.5, 0.5] and ome.shape == array.shape


def test_outputs_carry_the_axes_and_pixel_sizes_as_ome_zarr(model_file, tmp_path):
    from ome_zarr.writer import write_image as write_ome

    write_ome(image((2, 100, 90)), zarr.open_group(tmp_path / "in.zarr", mode="w"), axes="zyx",
              scale={"z": 3.0, "y": 0.25, "x": 0.25}, axes_units={"y": "micrometer", "x": "micrometer"},
              scale_factors=[])
    code = cli.main(["predict", str(tmp_path / "in.zarr"), "--out", str(tmp_path / "o.zarr"), "--model",
                     str(model_file), "--tile", "128", "--overlap", "32"])
    assert code == 0
    multiscale = zarr.open_group(tmp_path / "o.zarr", mode="r").attrs["ome"]["multiscales"][0]
    assert multiscale["axes"] == [{"name": "z", "type": "space"}, {"name": "y", "type": "space", "unit": "micrometer"},
                                  {"name": "x", "type": "space", "unit": "micrometer"}]
    assert multiscale["datasets"] == [{"path": "labels", "coordinateTransformations": [
        {"type": "scale", "scale": [3.0, 0.25, 0.25]}]}]
    assert open_image(tmp_path / "o.zarr").shape == (2, 100, 90)  # a finished store opens as an image


def test_interrupted_store_is_never_complete_and_resume_skips_finished_blocks(model, tmp_path):
    array, out = image(), tmp_path / "o.zarr"
    events = predict_to_zarr_iter(model, [("", ImageSource(array, "x"), None)], out, block=96, **TILING)
    first = [next(events) for _ in range(5)]
    events.close()  # as Ctrl-C would leave it
    root = zarr.open_group(out, mode="r")
    assert root.attrs["cellprep"]["complete"] is False and "ome" not in root.attrs
    assert (root["done"][...] != 0).sum() == 5 and first[-1].total == 16
    with pytest.raises(ImageReadError, match="unfinished"):
        open_image(out)
    with pytest.raises(OutputExistsError, match="--resume"):
        to_zarr(model, array, out)
    with pytest.raises(OutputExistsError, match="other settings"):
        to_zarr(model, array, out, resume=True, block=192)
    resumed = []
    drive(predict_to_zarr_iter(model, [("", ImageSource(array, "x"), None)], out, block=96, resume=True,
                               **TILING), resumed.append)
    assert len(resumed) == 11 and resumed[-1].done == 11 and resumed[-1].total == 11
    root = zarr.open_group(out, mode="r")
    assert root.attrs["cellprep"]["complete"] is True and root["done"][...].all()
    assert np.array_equal(root["labels"][...], predict(model, array, **TILING).labels)


def test_overwrite_replaces_only_zarr_stores(model, tmp_path):
    (tmp_path / "folder.zarr").mkdir()
    (tmp_path / "folder.zarr" / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="not a zarr store"):
        to_zarr(model, image((40, 40)), tmp_path / "folder.zarr", overwrite=True)
    assert (tmp_path / "folder.zarr" / "keep.txt").exists()
    to_zarr(model, image((40, 40)), tmp_path / "o.zarr")
    to_zarr(model, image((40, 40)), tmp_path / "o.zarr", overwrite=True)


def test_cli_folder_to_one_group_per_image_and_options_that_need_zarr(model, model_file, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(2):
        tifffile.imwrite(folder / f"img{k}.tif", image((150, 170), k))
    args = ["predict", str(folder), "--model", str(model_file), "--tile", "128", "--overlap", "32"]
    assert cli.main([*args, "--out", str(tmp_path / "o.zarr"), "--block", "96"]) == 0
    root = zarr.open_group(tmp_path / "o.zarr", mode="r")
    assert sorted(root.group_keys()) == ["img0", "img1"]
    for k in range(2):
        assert np.array_equal(root[f"img{k}/labels"][...], predict(model, image((150, 170), k), **TILING).labels)
    assert cli.main([*args, "--out", str(tmp_path / "o.zarr")]) == 1
    assert "--resume" in capsys.readouterr().err
    assert cli.main([*args, "--out", str(tmp_path / "tifs"), "--workers", "2"]) == 1
    assert "NAME.zarr" in capsys.readouterr().err


def test_ctrl_c_leaves_an_unfinished_store_that_resume_completes(model, model_file, tmp_path, monkeypatch, capsys):
    from napari_cellprep.engine.bigimage import outofcore

    tifffile.imwrite(tmp_path / "img.tif", image())
    args = ["predict", str(tmp_path / "img.tif"), "--out", str(tmp_path / "o.zarr"), "--model", str(model_file),
            "--tile", "128", "--overlap", "32", "--block", "96"]
    calls, real = [], outofcore.run_block

    def interrupted(task, stats):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(task.index)
        return real(task, stats)

    monkeypatch.setattr(outofcore, "run_block", interrupted)
    assert cli.main(args) == 130
    assert "--resume" in capsys.readouterr().err
    assert zarr.open_group(tmp_path / "o.zarr", mode="r").attrs["cellprep"]["complete"] is False
    monkeypatch.setattr(outofcore, "run_block", real)
    assert cli.main([*args, "--resume"]) == 0
    root = zarr.open_group(tmp_path / "o.zarr", mode="r")
    assert root.attrs["cellprep"]["complete"] is True
    assert np.array_equal(root["labels"][...], predict(model, image(), **TILING).labels)


def test_streamed_statistics_hold_one_band_at_a_time(monkeypatch):
    import tracemalloc

    monkeypatch.setattr(normalize, "MAX_STAT_SAMPLES", 1000)  # a sample of every 4001st pixel
    rows = np.random.default_rng(2).normal(0, 1, (1, 100, 2000))  # 1.6 MB per band of 100 rows
    tracemalloc.start()
    streamed_channel_stats(lambda a, b: rows.copy(), 2000, 2000, Normalization(), rows_per_read=100)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 * rows.nbytes  # 20 bands read: a sample that kept its band would hold them all


def test_resuming_a_finished_store_unmarks_it_until_done(model, tmp_path):
    array, out = image((150, 150)), tmp_path / "o.zarr"
    source = ImageSource(array, "x", ["y", "x"], [0.5, 0.5])
    drive(predict_to_zarr_iter(model, [("", source, None)], out, block=96, **TILING))
    zarr.open_group(out, mode="r+")["done"][0, 1, 1] = 0  # as if that block had been lost
    events = predict_to_zarr_iter(model, [("", source, None)], out, block=96, resume=True, **TILING)
    next(events)
    root = zarr.open_group(out, mode="r")
    assert root.attrs["cellprep"]["complete"] is False and "ome" not in root.attrs
    drive(events)
    root = zarr.open_group(out, mode="r")
    assert root.attrs["cellprep"]["complete"] is True and "ome" in root.attrs


def test_a_models_pixel_classifier_joins_the_blocks_as_it_joins_predict(model, tmp_path):
    """Blocks read the classifier's features with their halo: the same blend as in memory."""
    pytest.importorskip("sklearn")
    from dataclasses import replace

    from napari_cellprep.engine.classifier.fast import fit_fast

    array = image((300, 333), seed=3)
    plane = normalize.normalize_channels(array[None].astype(np.float32), model.info.normalization)
    target = np.full(array.shape, -1)
    target[::9] = (plane[0, ::9] > np.median(plane)).astype(int)
    both = replace(model, classifier=fit_fast([plane], [target], 2).with_weight(0.75))
    ref = predict(both, array, outputs=("probabilities",), **TILING)
    root = zarr.open_group(to_zarr(both, array, tmp_path / "c.zarr", outputs=("probabilities",)), mode="r")
    # features from another window round otherwise in the last bits: a tree may then split a pixel
    # the other way (one or two pixels here), never more
    off = np.abs(root["probabilities"][...] - ref.probabilities).max(axis=0) > 1e-4
    assert off.mean() < 1e-4 and (root["labels"][...] != ref.labels).mean() < 1e-4
    network = predict(model, array, **TILING)
    assert (network.labels != ref.labels).mean() > 0.01  # the classifier changed the result


def test_the_store_records_the_precision_its_blocks_ran_in(model, tmp_path, monkeypatch):
    from napari_cellprep.engine import devices

    array = image((200, 210))
    to_zarr(model, array, tmp_path / "f32.zarr", precision="auto")  # resolves to float32 here
    assert zarr.open_group(tmp_path / "f32.zarr", mode="r").attrs["cellprep"]["settings"]["precision"] == "float32"
    monkeypatch.setattr(devices, "cpu_has_native_bfloat16", lambda: True)
    monkeypatch.setattr(devices, "MEETS_THE_BAR", frozenset({("cpu", "bfloat16")}))
    to_zarr(model, array, tmp_path / "auto.zarr", precision="auto", outputs=("probabilities",))
    root = zarr.open_group(tmp_path / "auto.zarr", mode="r")
    assert root.attrs["cellprep"]["settings"]["precision"] == "bfloat16"
    half = predict(model, array, precision="bfloat16", outputs=("probabilities",), **TILING)
    np.testing.assert_allclose(root["probabilities"][...], half.probabilities, atol=1e-5)  # blocks ran in bfloat16
    assert_argmax_equal_off_ties(root["labels"][...], half.labels, half.probabilities, 0)
    events = predict_to_zarr_iter(model, [("", ImageSource(array, "x"), None)], tmp_path / "half.zarr", block=96,
                                  precision="bfloat16", **TILING)
    next(events)
    events.close()
    with pytest.raises(OutputExistsError, match=r"other settings \(precision\)"):
        to_zarr(model, array, tmp_path / "half.zarr", resume=True, precision="float32")
