"""The fast speed of the loop (issue #39): classic multiscale pixel features as fixed torch
filters and pixel classifiers fitted on painted strokes in well under a second, stored as plain
arrays (no pickle) and applied in torch on any device, tile by tile."""

from .features import FAMILIES, SCALES, feature_names, halo, pixel_features
from .forest import ForestClassifier, ForestSettings
from .mlp import MLPClassifier, MLPSettings
from .registry import CLASSIFIERS, classifier_from_state, fit_classifier, pixel_sample
from .state import ClassifierState, PixelClassifier, painted_pixels

__all__ = ["CLASSIFIERS", "FAMILIES", "SCALES", "ClassifierState", "ForestClassifier", "ForestSettings",
           "MLPClassifier", "MLPSettings", "PixelClassifier", "classifier_from_state", "feature_names", "fit_classifier", "halo",
           "painted_pixels", "pixel_features", "pixel_sample"]
