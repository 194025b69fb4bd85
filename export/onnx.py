"""Engine modules -> ONNX models (``to_onnx``), built with onnx.helper from the module graph.

The model's input is ``input`` (a graph spec's own input names), float32 of shape
``(batch, *sample)`` with a dynamic batch; its output is ``output``, or one output per head
(named as the heads) for a graph with named outputs. Modules are translated in eval mode:
dropout is the identity and batch norm uses its running statistics. A module without a
translation raises ``ExportError`` naming it by its path in the model and its class.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper

from engine.spec.graph import GraphModule

# the translator modules register themselves on import
from export import attention, basic, conv, graph, norm, recurrent  # noqa: F401
from export.builder import OPSET, Builder, ExportError, Val, translate, type_name

IR_VERSION = 8  # what opset 17 came with: readable by every onnxruntime since 1.13
MAX_BYTES = 2**31 - 2**26  # protobuf's 2 GiB limit, with room for the graph


def input_names(module: Any) -> list[str]:
    return list(module.plan.inputs) if isinstance(module, GraphModule) else ["input"]


def _dims(shape: tuple, batch_first: bool = True) -> list:
    return ["batch" if s is None and (i == 0 or not batch_first) else s for i, s in enumerate(shape)]


def to_onnx(module: Any, input_shape: Any, *, input_dtype: Any = np.float32, opset: int = OPSET,
            graph_name: str = "trainyard") -> onnx.ModelProto:
    """The ONNX model of ``module`` on samples of ``input_shape`` (one sample's shape, or a dict
    of input name -> shape for a graph with several inputs). Raises ExportError for a module
    (or a module's argument) ONNX cannot express; the model returned passes onnx.checker."""
    if opset < 17:
        raise ValueError("the exporter targets opset 17 or newer")
    names = input_names(module)
    if isinstance(input_shape, dict):
        shapes = {k: tuple(v) for k, v in input_shape.items()}
    elif len(names) == 1:
        shapes = {names[0]: tuple(input_shape)}
    else:
        raise ValueError(f"the graph takes {len(names)} inputs ({', '.join(names)}): give a shape for each")
    missing = [n for n in names if n not in shapes]
    if missing:
        raise ValueError(f"no shape for input(s) {', '.join(missing)}")
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(input_dtype))
    b = Builder(opset)
    inputs = []
    for n in names:
        b.reserve(n)
        inputs.append(Val(n, (None, *shapes[n]), elem))
    heads = list(module.plan.heads()) if isinstance(module, GraphModule) else ["output"]
    for h in heads:
        if h in names:
            raise ExportError("", type_name(module), f"head {h!r} has the name of an input; ONNX names are unique")
        b.reserve(h)
    was_training = module.training
    module.eval()
    try:
        result = translate(b, module, inputs, "")
    finally:
        module.train(was_training)
    outs = result if isinstance(result, dict) else {"output": result}
    outputs = []
    for head, v in outs.items():
        if not isinstance(v, Val):
            raise ExportError("", type_name(module), f"output {head!r} is several tensors; pick one with 'getitem'")
        b.nodes.append(helper.make_node("Identity", [v.name], [head], name=b.fresh(f"node:output/{head}")))
        outputs.append(helper.make_tensor_value_info(head, v.dtype, _dims(v.shape)))
    size = sum(t.ByteSize() for t in b.initializers)
    if size > MAX_BYTES:
        raise ExportError("", type_name(module), f"its weights take {size / 2**30:.1f} GiB, over the 2 GiB an "
                                                 "ONNX file can hold")
    onnx_graph = helper.make_graph(
        b.nodes, graph_name,
        [helper.make_tensor_value_info(v.name, v.dtype, _dims(v.shape)) for v in inputs],
        outputs, initializer=b.initializers)
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="trainyard", producer_version="0.1.0")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def to_bytes(module: Any, input_shape: Any, **kwargs: Any) -> bytes:
    """``to_onnx`` serialized: the .onnx file."""
    return to_onnx(module, input_shape, **kwargs).SerializeToString()
