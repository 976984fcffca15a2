"""The napari plugin layer: widgets, reader, sample data (the only part that imports napari/Qt)."""
