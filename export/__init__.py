"""Model export: trained engine modules as files other runtimes load.

``export.onnx.to_onnx(module, input_shape)`` translates an engine module (a ``layers``,
``graph`` or ``zoo`` spec's model, eval mode) into an ONNX model (opset 17); a layer without
an ONNX form raises ``ExportError`` naming its path and type. Imports engine and onnx only.
"""
from export.builder import OPSET, ExportError
from export.onnx import to_bytes, to_onnx

__all__ = ["OPSET", "ExportError", "to_bytes", "to_onnx"]
