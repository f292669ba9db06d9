"""edge_runtime: run an edgeskin skin-lesion classifier and its heatmap on a device, with numpy,
Pillow and a TFLite interpreter (ONNX Runtime optional). No torch, no TensorFlow.

    from edge_runtime import Classifier
    prediction = Classifier.load("model_int8.tflite").predict("lesion.jpg")
"""

from edge_runtime.classifier import DISCLAIMER, Classifier, Prediction
from edge_runtime.clinical import Context
from edge_runtime.errors import EdgeRuntimeError

__version__ = "0.1.0"
__all__ = ["Classifier", "Context", "Prediction", "EdgeRuntimeError", "DISCLAIMER", "__version__"]
