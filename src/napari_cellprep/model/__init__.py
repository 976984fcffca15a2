"""The networks of napari-cellprep (torch only: no napari, no Qt)."""

from .config import NAMED_CONFIGS, PAPER, ModelConfig, named_config
from .loss import IGNORE_INDEX, method_loss
from .networks import CellPrepNet, ModelOutput, PlainNet, SegmentationNet, build_model, output_names

__all__ = [
    "IGNORE_INDEX",
    "NAMED_CONFIGS",
    "PAPER",
    "CellPrepNet",
    "ModelConfig",
    "ModelOutput",
    "PlainNet",
    "SegmentationNet",
    "build_model",
    "method_loss",
    "named_config",
    "output_names",
]
