"""Random forests (and extra trees) fitted by scikit-learn, stored as plain node arrays and applied
by our own vectorised torch traversal, which gives scikit-learn's ``predict_proba`` (the same leaf
for every pixel and tree; probabilities equal up to float32 rounding of their mean)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .state import ClassifierState, as_batch

KIND = "forest"
CHUNK = 1 << 15
"""Pixels traversed at a time (the node indices take CHUNK × trees × 8 bytes)."""


@dataclass(frozen=True)
class ForestSettings:
    """scikit-learn's forest settings that matter here (``extra``: ExtraTreesClassifier)."""

    trees: int = 100
    extra: bool = False
    max_depth: int | None = None
    min_samples_leaf: int = 1
    balanced: bool = False
    jobs: int = 2
    seed: int = 0


class ForestClassifier:
    """All trees' nodes in flat arrays: ``feature``, ``threshold`` (float32, rounded down so that
    ``x <= threshold`` in float32 decides as scikit-learn's float64 comparison does), ``left`` and
    ``right`` (global node indices; a leaf points to itself with threshold +inf), ``value`` (N, C)
    class probabilities of each node, ``roots`` (T,) and the deepest tree's ``depth``."""

    def __init__(self, arrays: dict[str, np.ndarray], depth: int, feature_names: Sequence[str],
                 settings: ForestSettings = ForestSettings()):
        self.arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        self.depth = int(depth)
        self.feature_names = list(feature_names)
        self.num_classes = int(self.arrays["value"].shape[1])
        self.settings = settings
        self._tensors: dict[torch.device, dict[str, torch.Tensor]] = {}

    @classmethod
    def fit(cls, x: torch.Tensor, y: torch.Tensor, num_classes: int, feature_names: Sequence[str],
            settings: ForestSettings = ForestSettings()) -> ForestClassifier:
        """Fit scikit-learn's forest on ``x`` (n, F) and class indices ``y`` (n,)."""
        from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

        model = (ExtraTreesClassifier if settings.extra else RandomForestClassifier)(
            n_estimators=settings.trees, max_depth=settings.max_depth, min_samples_leaf=settings.min_samples_leaf,
            class_weight="balanced" if settings.balanced else None, n_jobs=settings.jobs, random_state=settings.seed)
        model.fit(x.cpu().numpy(), y.cpu().numpy())
        return cls.from_sklearn(model, num_classes, feature_names, settings)

    @classmethod
    def from_sklearn(cls, model, num_classes: int, feature_names: Sequence[str],
                     settings: ForestSettings = ForestSettings()) -> ForestClassifier:
        """The node arrays of a fitted scikit-learn forest (classes 0..num_classes−1)."""
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("feature", "threshold", "left", "right", "value")}
        roots, offset = [], 0
        for estimator in model.estimators_:
            tree = estimator.tree_
            n = tree.node_count
            leaf = tree.children_left < 0
            own = np.arange(offset, offset + n)
            threshold = tree.threshold.astype(np.float32)
            above = threshold.astype(np.float64) > tree.threshold
            threshold[above] = np.nextafter(threshold[above], np.float32(-np.inf))
            threshold[leaf] = np.inf
            value = np.zeros((n, num_classes))
            value[:, model.classes_.astype(int)] = tree.value[:, 0, :]
            value /= np.where(value.sum(1, keepdims=True) > 0, value.sum(1, keepdims=True), 1.0)
            parts["feature"].append(np.where(leaf, 0, tree.feature).astype(np.int64))
            parts["threshold"].append(threshold)
            parts["left"].append(np.where(leaf, own, tree.children_left + offset).astype(np.int64))
            parts["right"].append(np.where(leaf, own, tree.children_right + offset).astype(np.int64))
            parts["value"].append(value.astype(np.float32))
            roots.append(offset)
            offset += n
        arrays = {k: np.concatenate(v) for k, v in parts.items()}
        arrays["roots"] = np.asarray(roots, dtype=np.int64)
        depth = max(e.tree_.max_depth for e in model.estimators_)
        return cls(arrays, depth, feature_names, settings)

    def _on(self, device: torch.device) -> dict[str, torch.Tensor]:
        if device not in self._tensors:
            self._tensors[device] = {k: torch.from_numpy(v).to(device) for k, v in self.arrays.items()}
        return self._tensors[device]

    def leaves(self, x: torch.Tensor) -> torch.Tensor:
        """(n, T) global index of the leaf each of ``x``'s (n, F) rows reaches in each tree."""
        t = self._on(x.device)
        node = t["roots"].expand(x.shape[0], -1)
        for _ in range(self.depth):
            go_left = torch.gather(x, 1, t["feature"][node]) <= t["threshold"][node]
            node = torch.where(go_left, t["left"][node], t["right"][node])
        return node

    def predict_proba(self, features: torch.Tensor) -> torch.Tensor:
        """(F, H, W) or (B, F, H, W) → (C, H, W) or (B, C, H, W): the mean of the trees' leaf
        probabilities."""
        batch, single = as_batch(features)
        b, f, h, w = batch.shape
        value = self._on(batch.device)["value"]
        pixels = batch.float().permute(0, 2, 3, 1).reshape(-1, f)
        out = torch.empty(pixels.shape[0], self.num_classes, device=batch.device)
        with torch.no_grad():
            for start in range(0, pixels.shape[0], CHUNK):
                chunk = pixels[start : start + CHUNK].contiguous()
                out[start : start + CHUNK] = value[self.leaves(chunk)].double().mean(1).float()
        out = out.view(b, h, w, -1).permute(0, 3, 1, 2).contiguous()
        return out[0] if single else out

    def state(self) -> ClassifierState:
        settings = asdict(self.settings)
        meta = {"kind": KIND, "num_classes": self.num_classes, "feature_names": self.feature_names,
                "depth": self.depth, "settings": settings}
        return ClassifierState({k: v.copy() for k, v in self.arrays.items()}, meta)

    @classmethod
    def from_state(cls, state: ClassifierState) -> ForestClassifier:
        meta = state.meta
        return cls({k: np.asarray(v) for k, v in state.arrays.items()}, meta["depth"], meta["feature_names"],
                   ForestSettings(**meta["settings"]))
