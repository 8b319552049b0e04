"""Using a trained model: the `Predictor` and the backends that run the network (PyTorch, ONNX Runtime)."""

from fashionattr.inference.predictor import (
    BACKENDS,
    AttributeResult,
    Backend,
    Prediction,
    Predictor,
    expand_inputs,
    load_predictor,
)
from fashionattr.inference.torch_backend import find_checkpoints

__all__ = [
    "BACKENDS",
    "AttributeResult",
    "Backend",
    "Prediction",
    "Predictor",
    "expand_inputs",
    "find_checkpoints",
    "load_predictor",
]
