"""napari-cellprep: learned preprocessing and ensemble segmentation of low-quality cell images."""

__version__ = "0.1.0"
