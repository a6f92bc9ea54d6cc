"""Plain ONNX files without gan.* metadata, built with onnx.helper, for the V2 API."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper


def write_doubler(path: Path, batch: int | str = "N") -> Path:
    """y = 2x over x of shape [batch, 3] float32; a string batch makes the leading axis variable."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"])], "doubler", [x], [y], [two])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_custom_op_model(path: Path) -> Path:
    """A graph whose only node is a custom operator from a domain nobody registered."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    node = helper.make_node("Backdoor", ["x"], ["y"], domain="com.example.evil")
    graph = helper.make_graph([node], "custom", [x], [y])
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("com.example.evil", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 9
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
