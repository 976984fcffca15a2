"""Headless engine (no napari, no Qt), in rooms imported downward only:

- foundation: ``errors`` (the ``CellprepError`` family), ``events`` (typed progress events),
  ``devices`` (device and precision choice), ``threads`` (torch threads for jobs beside a GUI),
  ``checkpoint`` (``.cellprep`` files: ``load_model``, ``save_model``, ``ModelInfo``);
- ``images``: reading, layout, normalisation, labels, instances, metrics;
- ``prediction``: ``predict``/``predict_iter``, uncertainty, familiarity, evaluation;
- ``training``: the run plan, training data, the training loop, the live training job;
- ``bigimage``: blocks, zarr stores, out-of-core prediction, dask clusters;
- ``export``: bioimage.io packages and the demo's figure panel.
"""
