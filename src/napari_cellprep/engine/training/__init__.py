"""Training: ``plan`` (``TrainConfig``, ``training_settings``, ``model_to_train``), ``data``
(``labeled_items``, ``split_validation``, ``PatchSampler``), ``loop`` (``train_iter``, ``train``),
``losses`` (``weighted_loss``, ``training_loss``), ``scoring`` (``validation_scores``), ``head_fit``
(``fit_heads``), ``recipe`` (``prepare_run``: the checked ``RunPlan`` that the API,
the CLI and the Train dock all run) and ``live`` (``painted_items``, ``training_job``: a plan's run
with a live preview, as the Train dock runs it)."""
