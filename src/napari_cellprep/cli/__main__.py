"""``python -m napari_cellprep.cli``: the ``cellprep`` command."""

import sys

from . import main

sys.exit(main())
