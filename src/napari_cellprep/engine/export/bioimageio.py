"""A model as a bioimage.io model package (format 0.5), for any bioimage.io consumer.

The package holds the weights twice — a PyTorch state dict with its architecture as one
self-contained Python file (``model.export``), and TorchScript (traced, checked against the
eager model on another size and batch) — the checkpoint's preprocessing (per-channel min-max
or percentile scaling, then clipping to 0..1), test tensors from a real sample tile, the demo
panel as cover, the class names, the paper's citation and the BSD-3-Clause licence. Outputs:
the ensemble's class probabilities, the translation filters and the translated images.

Our checkpoints stay safetensors; this is a second format, written here and never read back.
ONNX is not exported: it needs the onnx and onnxruntime packages, which this project does not
depend on, for a round-trip check. Needs the ``bioimageio`` extra (``bioimageio.core``).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np
import tifffile
import torch

from ... import __version__
from ...model.export import ExportNet, architecture_source
from ..checkpoint import LoadedModel, check_class_names, class_identifier
from ..errors import CellprepError, OutputExistsError, SettingsError
from ..images.io import atomic_write, read_image, sample_paths
from ..images.layout import to_planes
from ..images.normalize import normalize_channels
from ..prediction.inference import OUTPUTS, predict

CITATION = (
    "S. Kato and K. Hotta, Automatic Preprocessing and Ensemble Learning for Low Quality Cell Image "
    "Segmentation, IEEE SMC 2021 (arXiv:2108.13118); journal version: Automatic enhancement "
    "preprocessing for segmentation of low quality cell images, Scientific Reports 2024"
)
CITATION_DOI = "10.48550/arXiv.2108.13118"
LICENSE = "BSD-3-Clause"
TEST_SIZE = 256
"""The test tensors are at most this many pixels square (cut from the sample's top left)."""
TOLERANCE = 1e-4
"""Absolute difference allowed between the test outputs and a consumer's run (float rounding)."""
OUTPUT_DESCRIPTIONS = {
    "probabilities": "the weighted ensemble's class probabilities",
    "filters": "the learned translation filters, one per class",
    "translated": "the translated images t_k = sigmoid(x + filter_k), each image's channels in turn",
}
OUTPUT_RANGES = {"probabilities": (0.0, 1.0), "filters": (0.0, None), "translated": (0.0, 1.0)}


def _bioimageio():
    try:
        from bioimageio.spec.model import v0_5
    except ImportError as exc:
        raise CellprepError(
            "bioimage.io export needs bioimageio.core: pip install 'napari-cellprep[bioimageio]'"
        ) from exc
    return v0_5


def _sample_plane(loaded: LoadedModel, sample: np.ndarray | None) -> np.ndarray:
    """A (in_channels, h, w) raw plane of the sample (default: the first packaged NIST tile), cut
    to a multiple of the model's size multiple; a gray tile is repeated for a colour model."""
    config = loaded.info.config
    image = read_image(sample_paths()[0]) if sample is None else np.asarray(sample)
    if sample is None and config.in_channels > 1:
        image = np.repeat(image[None], config.in_channels, axis=0)
    planes, _ = to_planes(
        image, config.in_channels, channel_axis=0 if image.ndim == 3 and sample is None else None
    )
    plane = planes[0]
    m = config.size_multiple
    h, w = (min(TEST_SIZE, size) // m * m for size in plane.shape[-2:])
    if h < m or w < m:
        raise SettingsError(f"the sample image is smaller than the model's size multiple {m}")
    return np.ascontiguousarray(plane[:, :h, :w])


def _export_net(loaded: LoadedModel) -> ExportNet:
    net = ExportNet(**loaded.info.config.to_dict())
    net.net.load_state_dict(loaded.model.state_dict())
    return net.eval()


def _torchscript(net: ExportNet, x: torch.Tensor, path: Path, multiple: int) -> None:
    """Trace ``net`` and check the trace against the eager model on another size and batch."""
    with torch.no_grad():
        traced = torch.jit.trace(net, x)
        other = torch.rand(2, x.shape[1], x.shape[2] + multiple, x.shape[3] + 2 * multiple)
        for eager, script in zip(net(other), traced(other), strict=True):
            if eager.shape != script.shape or not torch.allclose(eager, script, atol=1e-5):
                raise RuntimeError("the TorchScript trace does not reproduce the model on another size")
    traced.save(str(path))


def network_alone(loaded: LoadedModel) -> str | None:
    """What a package of ``loaded`` leaves out: its pixel classifier, if it has one."""
    if loaded.classifier is None:
        return None
    return (
        f"This package holds the network alone: the model's pixel classifier (weight "
        f"{loaded.classifier.weight:g} in its final ensemble) is not part of it, so its labels can differ "
        f"from napari-cellprep's; use the .cellprep file in napari-cellprep for the whole model."
    )


def _documentation(loaded: LoadedModel, outputs: list[tuple[str, list[str]]]) -> str:
    info = loaded.info
    norm = info.normalization
    scaling = f"{norm.method} scaling" + (
        f" (percentiles {norm.low}, {norm.high})" if norm.method == "percentile" else ""
    )
    return "\n".join(
        [
            f"# {loaded.label}",
            "",
            (
                f"A CellPrep model exported by napari-cellprep {__version__}: learned preprocessing (one "
                "translation filter per class, translated images t_k = sigmoid(x + filter_k)) and a "
                "weighted ensemble of the branches' segmentations."
            ),
            "",
            *([network_alone(loaded), ""] if loaded.classifier is not None else []),
            f"Classes: {', '.join(f'{k} = {name}' for k, name in enumerate(info.class_names))}.",
            f"Preprocessing: {scaling} of each channel to 0..1, then clipping to 0..1.",
            "",
            "Outputs:",
            *[f"- `{name}`: {', '.join(channels)}" for name, channels in outputs],
            "",
            (
                "The argmax over `probabilities` gives the class labels. Input height and width must "
                f"be multiples of {info.config.size_multiple}."
            ),
            "",
            "# Validation",
            "",
            (
                "The test tensors are this model's outputs on the test input (a real sample tile), "
                "computed by napari-cellprep with the same preprocessing; bioimageio.core reproduces them "
                f"from both weight formats (`bioimageio test`) within {TOLERANCE:g}. napari-cellprep's "
                "test suite exports a model, then validates and test-runs the package offline."
            ),
            "",
            f"Cite: {CITATION}.",
            "",
        ]
    )


def _output_channels(loaded: LoadedModel) -> list[tuple[str, list[str]]]:
    """(output name, channel names) of each output, in the order ``ExportNet`` returns them."""
    config = loaded.info.config
    check_class_names(loaded.info.class_names)
    channels = [("probabilities", [class_identifier(name) for name in loaded.info.class_names])]
    if config.architecture == "cellprep":
        c, cin = config.num_classes, config.in_channels
        channels.append(("filters", [f"filter_{k + 1}" for k in range(c)]))
        channels.append(("translated", [f"t{k + 1}_c{i}" for k in range(c) for i in range(cin)]))
    return channels


def _write_files(loaded: LoadedModel, plane: np.ndarray, tmp: Path) -> list[tuple[str, list[str]]]:
    """Every file of the package into ``tmp``; returns the outputs' channel names."""
    from .panel import make_panel  # matplotlib is needed here only

    info, config = loaded.info, loaded.info.config
    x = torch.from_numpy(normalize_channels(plane, info.normalization)[None])
    net = _export_net(loaded)
    with torch.no_grad():
        results = [t.numpy() for t in net(x)]
    channels = _output_channels(loaded)
    for name, array in [("input", plane[None].astype(np.float32))] + [
        (name, result) for (name, _), result in zip(channels, results, strict=True)
    ]:
        np.save(tmp / f"test_{name}.npy", array)
        tifffile.imwrite(tmp / f"sample_{name}.tif", array)
    torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, tmp / "weights.pt")
    (tmp / "cellprep_architecture.py").write_text(architecture_source())
    _torchscript(net, x, tmp / "weights_torchscript.pt", config.size_multiple)
    (tmp / "README.md").write_text(_documentation(loaded, channels))
    gray = config.in_channels == 1
    prediction = predict(
        loaded, plane[0] if gray else plane, channel_axis=None if gray else 0, outputs=OUTPUTS
    )
    colour = np.moveaxis(normalize_channels(plane[:3], info.normalization), 0, -1)  # imshow: RGB in 0..1
    shown = plane[0] if gray or config.in_channels < 3 else colour
    title = f"{loaded.label} (napari-cellprep)"
    make_panel(prediction, shown, tmp / "cover.png", class_colors=info.class_colors, title=title)
    return channels


def _tensors(v0_5, loaded: LoadedModel, tmp: Path, channels: list[tuple[str, list[str]]]):
    """The input and output tensor descriptions."""
    config, norm = loaded.info.config, loaded.info.normalization
    m, raw = config.size_multiple, v0_5.TensorId("raw")
    percentile = norm.method == "percentile"
    scaling = v0_5.ScaleRangeKwargs(
        axes=[v0_5.AxisId("y"), v0_5.AxisId("x")],  # per channel and image, as napari-cellprep does
        min_percentile=norm.low if percentile else 0.0,
        max_percentile=norm.high if percentile else 100.0,
    )
    preprocessing = [
        v0_5.EnsureDtypeDescr(kwargs=v0_5.EnsureDtypeKwargs(dtype="float32")),
        v0_5.ScaleRangeDescr(kwargs=scaling),
        v0_5.ClipDescr(kwargs=v0_5.ClipKwargs(min=0.0, max=1.0)),
    ]

    def files(name: str) -> dict:
        return {
            "test_tensor": v0_5.FileDescr(source=tmp / f"test_{name}.npy"),
            "sample_tensor": v0_5.FileDescr(source=tmp / f"sample_{name}.tif"),
        }

    space = [v0_5.AxisId("y"), v0_5.AxisId("x")]
    channel_names = [v0_5.Identifier(f"c{c}") for c in range(config.in_channels)]
    inputs = [
        v0_5.InputTensorDescr(
            id=raw,
            description="the image, raw intensities (one plane)",
            axes=[
                v0_5.BatchAxis(),
                v0_5.ChannelAxis(channel_names=channel_names),
                *[v0_5.SpaceInputAxis(id=a, size=v0_5.ParameterizedSize(min=m, step=m)) for a in space],
            ],
            data=v0_5.IntervalOrRatioDataDescr(type="float32"),
            preprocessing=preprocessing,
            **files("input"),
        )
    ]
    outputs = [
        v0_5.OutputTensorDescr(
            id=v0_5.TensorId(name),
            description=OUTPUT_DESCRIPTIONS[name],
            axes=[
                v0_5.BatchAxis(),
                v0_5.ChannelAxis(channel_names=[v0_5.Identifier(n) for n in names]),
                *[
                    v0_5.SpaceOutputAxis(id=a, size=v0_5.SizeReference(tensor_id=raw, axis_id=a))
                    for a in space
                ],
            ],
            data=v0_5.IntervalOrRatioDataDescr(type="float32", range=OUTPUT_RANGES[name]),
            **files(name),
        )
        for name, names in channels
    ]
    return inputs, outputs


def _weights(v0_5, loaded: LoadedModel, tmp: Path):
    version = v0_5.Version(torch.__version__.split("+")[0])
    architecture = v0_5.ArchitectureFromFileDescr(
        source=tmp / "cellprep_architecture.py",
        callable=v0_5.Identifier("ExportNet"),
        kwargs=loaded.info.config.to_dict(),
    )
    return v0_5.WeightsDescr(
        pytorch_state_dict=v0_5.PytorchStateDictWeightsDescr(
            source=tmp / "weights.pt", architecture=architecture, pytorch_version=version
        ),
        torchscript=v0_5.TorchscriptWeightsDescr(
            source=tmp / "weights_torchscript.pt", pytorch_version=version, parent="pytorch_state_dict"
        ),
    )


def export_bioimageio(
    loaded: LoadedModel,
    out: str | os.PathLike,
    *,
    sample: np.ndarray | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``loaded`` as a bioimage.io model package ``out`` (a .zip), atomically; an existing
    file is kept unless ``overwrite``. ``sample``: one image for the test tensors and the cover
    (default: the first packaged NIST tile). The package holds the network alone: a model's pixel
    classifier (``network_alone``) is not part of it, and its description says so."""
    v0_5 = _bioimageio()
    from bioimageio.spec import save_bioimageio_package

    out = Path(out)
    if out.suffix != ".zip":
        raise SettingsError(f"{out}: a bioimage.io package is a .zip file")
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} already exists; choose another name or allow overwriting")
    info = loaded.info
    loaded = LoadedModel(loaded.model.to("cpu").eval(), info, loaded.path, loaded.classifier)
    plane = _sample_plane(loaded, sample)
    name = " ".join(re.sub(r"[^A-Za-z0-9_+\- ()]", " ", f"CellPrep {loaded.label}").split())[:64]
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        channels = _write_files(loaded, plane, tmp)
        inputs, outputs = _tensors(v0_5, loaded, tmp, channels)
        tolerance = v0_5.ReproducibilityTolerance(absolute_tolerance=TOLERANCE, relative_tolerance=TOLERANCE)
        ours = {k: v for k, v in info.to_dict().items() if k != "training"} | {"version": __version__}
        descr = v0_5.ModelDescr(
            name=name,
            description=f"Learned preprocessing and ensemble segmentation (Kato & Hotta): "
            f"{', '.join(info.class_names)}"[:128],
            authors=[v0_5.Author(name="napari-cellprep developers")],
            cite=[v0_5.CiteEntry(text=CITATION, doi=v0_5.Doi(CITATION_DOI))],
            license=v0_5.LicenseId(LICENSE),
            documentation=v0_5.FileDescr(source=tmp / "README.md"),
            covers=[v0_5.FileDescr(source=tmp / "cover.png")],
            tags=["segmentation", "cellprep", "pytorch", "2d", "learned preprocessing", "ensemble"],
            inputs=inputs,
            outputs=outputs,
            weights=_weights(v0_5, loaded, tmp),
            config=v0_5.Config(
                bioimageio=v0_5.BioimageioConfig(reproducibility_tolerance=[tolerance]),
                **{"napari-cellprep": ours},
            ),
        )
        with atomic_write(out, overwrite) as target:
            save_bioimageio_package(descr, output_path=target)
    return out


def test_package(path: str | os.PathLike) -> tuple[bool, str]:
    """Validate and test-run a package with bioimageio.core (every weight format): whether it
    passed, and its summary in words."""
    _bioimageio()
    from bioimageio.core import test_model

    summary = test_model(str(path))
    return summary.status == "passed", summary.format()


test_package.__test__ = False  # not a pytest test
