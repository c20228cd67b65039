"""Using a finished run: load it for inference (`load_run` -> Run with predict, sample,
translate) and export it (`export`: ONNX, TorchScript, safetensors).

Layer: above engine and kinds, below cli; nothing below imports it.
"""
from .run import Prediction, Run, load_run

__all__ = ["load_run", "Run", "Prediction"]
