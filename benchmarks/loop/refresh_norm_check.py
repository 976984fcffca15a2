"""Does re-estimating BatchNorm statistics at each epoch's end fix the fine-tuning collapses?

For four scribbles cases (benchmarks/loop/scribbles.py: same images, light levels and 60 strokes),
fine-tune the bundled model with the Train dock's settings (engine defaults as of commit 652ee58,
before ``refresh_norm`` existed) for 20 epochs of 5 steps, and score each epoch's eval-mode model on
the whole image: as is (momentum-averaged running statistics), after AdaBN on 2 batches of 8
training patches (what ``refresh_norm`` now does), and after AdaBN on the whole image. Step-based,
one torch thread, so the machine's load does not change the figures (only the seconds).

    python -m benchmarks.loop.refresh_norm_check
    # prints rows, writes docs/results/variants/scribbles/refresh-norm.json
    python -m benchmarks.loop.refresh_norm_check nist-phase/clean/20 nist-phase/clean/95   # other cases, added
"""
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.loop import scribbles as S
from napari_cellprep.engine.checkpoint import LoadedModel, load_default
from napari_cellprep.engine.events import EpochEnd
from napari_cellprep.engine.prediction.inference import predict
from napari_cellprep.engine.training.data import PatchSampler
from napari_cellprep.engine.training.live import painted_items  # noqa
from napari_cellprep.engine.training.loop import adapt_batch_norm, train_iter
from napari_cellprep.engine.training.plan import TrainConfig


class A: seed=0; strokes=60; brush=3; length=30
OUT = Path(__file__).resolve().parents[2] / "docs/results/variants/scribbles/refresh-norm.json"


def main(argv: list[str] | None = None) -> None:
    torch.set_num_threads(1)
    base = load_default()
    cases = [("nist-phase","low-light",95), ("vnc-em","clean",4), ("isbi2012-membrane","clean",2), ("nist-phase","very-low-light",20)]
    if argv:  # more cases: SET/CONDITION/INDEX ..., added to the JSON
        cases = [(a.split("/")[0], a.split("/")[1], int(a.split("/")[2])) for a in argv]
    out = json.loads(OUT.read_text()) if OUT.exists() else {}
    for dataset, condition, index in cases:
        image, mask, name, names, strokes, labels = S.painted_case(dataset, condition, index, A)
        info, init = S.model_info("finetune", base, names)
        items = painted_items(image, labels, rgb=False, in_channels=info.config.in_channels,
                              normalization=info.normalization, class_names=info.class_names)
        st = S.SETTINGS
        # the dock's settings then; refresh_norm=False so that the model "as is" is the old behaviour
        config = TrainConfig(refresh_norm=False, epochs=20, batch_size=st["batch_size"], learning_rate=st["learning_rate"], patch_size=st["patch_size"],
                             steps_per_epoch=st["steps_per_epoch"], device="cpu", freeze_norm=bool(st["freeze_norm"]),
                             adapt_norm=bool(st["adapt_norm"]), fresh_learning_rate=st.get("fresh_learning_rate"))
        nc = len(names)
        x_whole = torch.from_numpy(items[0].image[None].astype(np.float32))
        rows = []
        t0 = time.perf_counter()
        for ev in train_iter(items, None, info, config, init=init):
            if not isinstance(ev, EpochEnd) or ev.epoch not in (1, 2, 3, 5, 8, 12, 16, 20):
                continue
            m = ev.best_model.model
            a = S.miou(predict(LoadedModel(m, info), image, outputs=()).labels, mask, nc)["miou"]
            m2 = copy.deepcopy(m)
            sampler = PatchSampler(items, config.patch_size, np.random.default_rng(ev.epoch), False)
            adapt_batch_norm(m2, (torch.from_numpy(sampler.sample(8)[0]) for _ in range(2)))
            b = S.miou(predict(LoadedModel(m2, info), image, outputs=()).labels, mask, nc)["miou"]
            m3 = copy.deepcopy(m)
            h, w = x_whole.shape[-2:]; mult = 16
            xw = x_whole[..., : h - h % mult, : w - w % mult]
            adapt_batch_norm(m3, [xw])
            c = S.miou(predict(LoadedModel(m3, info), image, outputs=()).labels, mask, nc)["miou"]
            rows.append((ev.epoch, round(a,3), round(b,3), round(c,3)))
            print(dataset, condition, index, "epoch", ev.epoch, "as is %.3f  adabn-patches %.3f  adabn-whole %.3f" % (a, b, c), "%.0fs" % (time.perf_counter()-t0), flush=True)
        out[f"{dataset}/{condition}/{index}"] = rows
        json.dump(out, open(OUT, "w"), indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
