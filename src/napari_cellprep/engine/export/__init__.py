"""Export: ``bioimageio`` (``export_bioimageio``, ``test_package``) and ``panel``
(``make_panel``: the demo's one-figure view of a prediction)."""
