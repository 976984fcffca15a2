"""benchmarks/performance/precision.py's measures (agreement, mIoU change, relative and display-range
errors, the bar) and the Markdown section it writes into a hand-written page."""

import numpy as np
import pytest

from benchmarks.harness.sections import markers, write_section
from benchmarks.performance import precision as bench
from napari_cellprep.engine.images.metrics import confusion_matrix, scores
from tests.engine.prediction.test_inference import textured, tiny_model


def test_the_tally_compares_16_bit_with_float32():
    loaded = tiny_model("cellprep")
    image = textured((96, 112))
    mask = (image > 0.5).astype(np.uint8)
    reference, _ = bench.timed_predict(loaded, image, "cpu", "float32")
    same = bench.Tally()
    same.add(reference, reference, mask, 2)
    row = same.row()
    assert row["agreement"] == 1.0 and row["miou_change"] == 0.0 and row["flips_uncertain"] is None
    assert row["filters_relative_error"] == row["translated_relative_error"] == 0.0 and bench.meets_bar(row)
    half, _ = bench.timed_predict(loaded, image, "cpu", "bfloat16")
    tally = bench.Tally()
    tally.add(reference, half, mask, 2)
    tally.add(reference, half, mask, 2)  # sums pool over the images of a case
    row = tally.row()
    changed = half.labels != reference.labels
    assert row["pixels"] == 2 * image.size and row["agreement"] == pytest.approx(1 - changed.mean())
    filters = np.linalg.norm(half.filters - reference.filters) / np.linalg.norm(reference.filters)
    assert row["filters_relative_error"] == pytest.approx(filters, rel=1e-4) and 0 < filters < 0.1
    assert 0 < row["translated_range_error"] < 1
    miou = [scores(confusion_matrix(p.labels, mask, 2)).miou for p in (reference, half)]
    assert row["miou_change"] == pytest.approx(miou[1] - miou[0])


def test_the_bar_needs_both_agreement_and_a_small_miou_change():
    assert bench.meets_bar({"agreement": 0.9995, "miou_change": -0.0009})
    assert not bench.meets_bar({"agreement": 0.9985, "miou_change": 0.0})
    assert not bench.meets_bar({"agreement": 1.0, "miou_change": 0.001})
    assert bench.meets_bar({"agreement": 0.999, "miou_change": None})  # no ground truth for the model's classes


def test_range_error_is_per_map_against_its_display_range():
    reference = np.stack([np.linspace(0, 1, 400).reshape(20, 20), np.linspace(0, 100, 400).reshape(20, 20)])
    test = reference.copy()
    test[1, 0, 0] += 5.0  # 5 % of the second map's range, 500 % of the first's
    assert bench.range_error(test, reference) == pytest.approx(5.0 / np.subtract(*np.percentile(reference[1], [99.5, 0.5])))


def test_held_out_images_never_include_the_stroke_image(data_root):
    nist = bench.held_out("nist-phase", 30)
    assert nist[:3] == [0, 5, 10] and all(i % 5 == 0 for i in nist) and len(nist) == 20  # the bundled model's test tiles
    assert bench.STROKE_IMAGE["vnc-em"] not in bench.held_out("vnc-em", 30)


def test_a_section_is_replaced_and_the_prose_around_it_kept(tmp_path):
    page = tmp_path / "page.md"
    write_section(page, "table", ["| a |"])  # a new page: the section alone
    start, end = markers("table")
    assert page.read_text() == f"{start}\n| a |\n{end}\n"
    page.write_text("# Title\n\nProse before.\n\n" + page.read_text() + "\nProse after.\n")
    write_section(page, "table", ["| b |", "| c |"])
    assert page.read_text() == f"# Title\n\nProse before.\n\n{start}\n| b |\n| c |\n{end}\n\nProse after.\n"
    write_section(page, "other", ["x"])
    assert page.read_text().endswith(f"Prose after.\n\n{markers('other')[0]}\nx\n{markers('other')[1]}\n")
