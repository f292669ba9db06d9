"""edgeskin: train, compress and deploy an explainable skin-lesion classifier."""

__version__ = "0.1.0"
