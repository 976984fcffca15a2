"""Prediction: ``inference`` (``predict``, ``predict_iter``, ``Prediction``), ``uncertainty``
(``uncertain_regions``), ``familiarity`` (``measure_familiarity``, ``calibrate_model``),
``evaluation`` (``evaluate``, ``evaluate_iter``) and ``model_cache`` (``cached_model``)."""
