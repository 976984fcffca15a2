"""napari-cellprep: learned preprocessing and ensemble segmentation of low-quality cell images.

``import napari_cellprep as cp`` is cheap: the API (``cp.load``, ``cp.predict``, ``cp.train``,
``cp.fine_tune`` …, see ``napari_cellprep.api``) imports torch on first use, napari never.
"""

__version__ = "0.1.0"

_API = (
    "CellprepError",
    "Instances",
    "LoadedModel",
    "Prediction",
    "TrainingResult",
    "fine_tune",
    "instances",
    "load",
    "measure",
    "predict",
    "save",
    "train",
    "write_measurements",
)

__all__ = [  # noqa: PLE0604
    "__version__",
    *_API,
]


def __getattr__(name: str):
    """The API's names, imported on first use (PEP 562)."""
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
