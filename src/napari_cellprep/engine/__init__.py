"""Headless engine: training, tiled inference, checkpoints, metrics, data (no napari, no Qt)."""
