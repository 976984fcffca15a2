"""The networks of napari-cellprep (torch only: no napari, no Qt)."""

from .config import ModelConfig
from .loss import IGNORE_INDEX, method_loss
from .networks import CellPrepNet, ModelOutput, PlainNet, SegmentationNet, build_model, output_names

__all__ = [
    "IGNORE_INDEX",
    "CellPrepNet",
    "ModelConfig",
    "ModelOutput",
    "PlainNet",
    "SegmentationNet",
    "build_model",
    "method_loss",
    "output_names",
]
