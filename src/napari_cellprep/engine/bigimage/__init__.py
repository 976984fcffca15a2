"""Images larger than memory: ``blocks`` (``plan_grid``, ``predict_region``), ``zarr_store``
(``prepare_store``, ``write_block``, ``done_blocks``), ``outofcore`` (``predict_to_zarr_iter``,
``LocalExecutor``) and ``cluster`` (``dask_executor``)."""
