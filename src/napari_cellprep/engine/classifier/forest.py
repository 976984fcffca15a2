"""Random forests (and extra trees) of bounded depth, fitted by scikit-learn, stored as plain arrays
and applied by our own vectorised torch traversal, which gives scikit-learn's ``predict_proba``
(the same leaf for every pixel and tree; probabilities equal up to float32 rounding of the mean).

Each tree is stored as a perfect binary tree of the forest's ``depth`` in heap order (the children
of node i are 2i+1 and 2i+2): a leaf above the last level becomes a chain of nodes that send every
pixel left (threshold +inf) to copies of its value. Traversal is then ``depth`` rounds of three
gathers and a comparison for every pixel and tree at once, with no branches, on any device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .state import ClassifierState, as_batch

KIND = "forest"
CHUNK = 1 << 12
"""Pixels traversed at a time (the node indices take CHUNK × trees × 8 bytes: cache-sized)."""


@dataclass(frozen=True)
class ForestSettings:
    """scikit-learn's forest settings that matter here. ``max_depth`` bounds the stored perfect
    trees (2^depth leaves per tree). The defaults, extremely randomised trees (``extra``), 32 of
    depth ≤ 12: in docs/results/loop/classifier-choice.md they are +1.4 points [+0.0, +2.8] over
    the scribbles forest anchor on 27 cases, +0.7 [−0.1, +1.4] over random-forest trees of the
    same size (not distinguishable), and fit about 5× faster than those."""

    trees: int = 32
    max_depth: int = 12
    extra: bool = True
    min_samples_leaf: int = 1
    balanced: bool = False
    jobs: int = 2
    seed: int = 0


class ForestClassifier:
    """Arrays ``feature`` (T, 2^d − 1) int64, ``threshold`` (T, 2^d − 1) float32, rounded down so
    that ``x <= threshold`` in float32 decides as scikit-learn's float64 comparison does, and
    ``value`` (T, 2^d, C) float32, each leaf's class probabilities; d = ``depth``."""

    def __init__(self, arrays: dict[str, np.ndarray], feature_names: Sequence[str],
                 settings: ForestSettings = ForestSettings()):
        self.arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        self.depth = int(np.log2(self.arrays["value"].shape[1]))
        self.feature_names = list(feature_names)
        self.num_classes = int(self.arrays["value"].shape[2])
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
        """The perfect-tree arrays of a fitted scikit-learn forest of depth at most
        ``settings.max_depth`` (its classes among 0..num_classes−1)."""
        depth = max(1, settings.max_depth)
        trees = [_perfect_tree(e.tree_, depth, model.classes_.astype(int), num_classes) for e in model.estimators_]
        arrays = {k: np.stack([t[k] for t in trees]) for k in ("feature", "threshold", "value")}
        return cls(arrays, feature_names, settings)

    def _on(self, device: torch.device) -> dict[str, torch.Tensor]:
        if device not in self._tensors:
            t = {k: torch.from_numpy(v).to(device) for k, v in self.arrays.items()}
            self._tensors[device] = {"feature": t["feature"].reshape(1, -1), "threshold": t["threshold"].reshape(1, -1),
                                     "values": list(t["value"].reshape(-1, self.num_classes).T.contiguous()[:, None])}
        return self._tensors[device]

    def leaves(self, x: torch.Tensor) -> torch.Tensor:
        """(n, T) global leaf index (tree · 2^d + leaf) each of ``x``'s (n, F) rows reaches."""
        t = self._on(x.device)
        count, internal = self.arrays["feature"].shape
        base = torch.arange(count, device=x.device) * internal
        node = base.expand(x.shape[0], -1).contiguous()  # global index of the current node
        step = 1 - base  # global child = 2 · global − base + 1 + (goes right)
        feature, threshold = t["feature"].expand(x.shape[0], -1), t["threshold"].expand(x.shape[0], -1)
        for _ in range(self.depth):  # gather from a stride-0 view: several times faster than take here
            right = torch.gather(x, 1, torch.gather(feature, 1, node)) > torch.gather(threshold, 1, node)
            node.mul_(2).add_(step).add_(right)
        return node - internal + torch.arange(count, device=x.device)  # heap leaf → tree · 2^d + leaf

    def predict_proba(self, features: torch.Tensor) -> torch.Tensor:
        """(F, H, W) or (B, F, H, W) → (C, H, W) or (B, C, H, W): the mean of the trees' leaf
        probabilities (summed in float64, as scikit-learn)."""
        batch, single = as_batch(features)
        b, f, h, w = batch.shape
        values = self._on(batch.device)["values"]
        count = self.arrays["feature"].shape[0]
        pixels = batch.float().permute(0, 2, 3, 1).reshape(-1, f)
        out = torch.empty(self.num_classes, pixels.shape[0], device=batch.device)
        with torch.no_grad():
            for start in range(0, pixels.shape[0], CHUNK):
                leaves = self.leaves(pixels[start : start + CHUNK].contiguous())
                for c, value in enumerate(values):
                    leaf_values = torch.gather(value.expand(leaves.shape[0], -1), 1, leaves)
                    out[c, start : start + CHUNK] = leaf_values.sum(1, dtype=torch.float64) / count
        out = out.view(-1, b, h, w).transpose(0, 1)
        return out[0].contiguous() if single else out.contiguous()

    def state(self) -> ClassifierState:
        meta = {"kind": KIND, "num_classes": self.num_classes, "feature_names": self.feature_names,
                "settings": asdict(self.settings)}
        return ClassifierState({k: v.copy() for k, v in self.arrays.items()}, meta)

    @classmethod
    def from_state(cls, state: ClassifierState) -> ForestClassifier:
        return cls({k: np.asarray(v) for k, v in state.arrays.items()}, state.meta["feature_names"],
                   ForestSettings(**state.meta["settings"]))


def _perfect_tree(tree, depth: int, classes: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """One scikit-learn tree (``tree_``) as a perfect binary tree of ``depth`` in heap order."""
    if tree.max_depth > depth:
        raise ValueError(f"a tree of depth {tree.max_depth} does not fit a perfect tree of depth {depth}")
    left, right = tree.children_left, tree.children_right
    leaf = left < 0
    threshold = tree.threshold.astype(np.float32)
    above = threshold.astype(np.float64) > tree.threshold
    threshold[above] = np.nextafter(threshold[above], np.float32(-np.inf))
    threshold[leaf] = np.inf
    feature = np.where(leaf, 0, tree.feature).astype(np.int64)
    value = np.zeros((tree.node_count, num_classes))
    value[:, classes] = tree.value[:, 0, :]
    value /= np.where(value.sum(1, keepdims=True) > 0, value.sum(1, keepdims=True), 1.0)
    # level by level, the scikit-learn node at each heap position (a leaf repeats below itself)
    nodes, features, thresholds = np.zeros(1, np.int64), [], []
    for _ in range(depth):
        features.append(feature[nodes])
        thresholds.append(threshold[nodes])
        children = np.stack([np.where(leaf[nodes], nodes, left[nodes]), np.where(leaf[nodes], nodes, right[nodes])], 1)
        nodes = children.reshape(-1)
    return {"feature": np.concatenate(features), "threshold": np.concatenate(thresholds),
            "value": value[nodes].astype(np.float32)}
