"""Training: ``plan`` (``TrainConfig``, ``training_settings``, ``model_to_train``), ``data``
(``labeled_items``, ``split_validation``, ``PatchSampler``), ``loop`` (``train_iter``, ``train``),
``head_fit`` (``fit_heads``) and ``live`` (``painted_items``, ``training_job``: training with a
live preview, as the Train dock runs it)."""
