"""Models: any timm backbone + an edgeskin head, with a named CAM layer."""

from edgeskin.models.factory import CAM_LAYER, SkinClassifier, build_model, model_for_card  # noqa: F401
