"""Images and labels: ``io`` (``read_image``, ``write_image``, ``atomic_write``, ``find_pairs``),
``layout`` (``model_input``, ``find_channel_axis``), ``planes`` (``LazyPlanes``), ``sources``
(``open_image``), ``normalize`` (``Normalization``, ``channel_stats``), ``labels`` (``LabelKind``,
``to_targets``, ``correction_weights``), ``instances`` (``find_instances``,
``measure_instances``) and ``metrics`` (``scores``, ``confusion_matrix``, ``kfold_splits``)."""
