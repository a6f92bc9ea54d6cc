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


def write_int8_caster(path: Path) -> Path:
    """y = float(x) over x of shape [N, 2] int8: an input whose typed contents (int_contents, 32-bit) may not fit."""
    x = helper.make_tensor_value_info("x", TensorProto.INT8, ["N", 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])
    graph = helper.make_graph([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)], "caster", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return _save(model, path, {})


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


def write_external_data_model(path: Path, location: str) -> Path:
    """y = x + w over x of shape [N, 4] float32, the weight w (16 bytes) stored as external data at `location`."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4], [0.0] * 4)
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "reader", [x], [y], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())  # onnx.save would try to resolve the external data
    return path


def _save(model: onnx.ModelProto, path: Path, metadata: dict[str, str]) -> Path:
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.ir_version = 9
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_translator(
    path: Path,
    input_format: str = "rgb",
    scale: int = 2,
    size_multiple: int = 4,
    train_size: tuple[int, int] = (8, 8),
    dynamic_size: bool = True,
) -> Path:
    """A translator built by hand, with gan.translator metadata; values stay in [-1, 1].

    rgb: nearest-neighbour upscaling by `scale`; gray: the grey channel replicated to RGB;
    rgb+mask: the colours times the mask (holes become 0). Height and width are dynamic
    unless `dynamic_size` is False (then fixed at train_size).
    """
    from service.translator_signature import INPUT_CHANNELS, TranslatorSignature

    channels = INPUT_CHANNELS[input_format]
    height, width = ("H", "W") if dynamic_size else train_size
    out_h, out_w = ("OH", "OW") if dynamic_size else (train_size[0] * scale, train_size[1] * scale)
    source = helper.make_tensor_value_info("source", TensorProto.FLOAT, ["N", channels, height, width])
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, out_h, out_w])
    initializers = [helper.make_tensor("scales", TensorProto.FLOAT, [4], [1.0, 1.0, float(scale), float(scale)])]
    if input_format == "rgb":
        nodes = [helper.make_node("Identity", ["source"], ["colours"])]
    elif input_format == "gray":
        nodes = [helper.make_node("Concat", ["source", "source", "source"], ["colours"], axis=1)]
    else:
        initializers += [
            helper.make_tensor("starts", TensorProto.INT64, [1], [0]),
            helper.make_tensor("three", TensorProto.INT64, [1], [3]),
            helper.make_tensor("four", TensorProto.INT64, [1], [4]),
            helper.make_tensor("axis", TensorProto.INT64, [1], [1]),
        ]
        nodes = [
            helper.make_node("Slice", ["source", "starts", "three", "axis"], ["rgb"]),
            helper.make_node("Slice", ["source", "three", "four", "axis"], ["mask"]),
            helper.make_node("Mul", ["rgb", "mask"], ["colours"]),
        ]
    nodes.append(helper.make_node("Resize", ["colours", "", "scales"], ["image"], mode="nearest"))
    graph = helper.make_graph(nodes, "translator", [source], [image], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    signature = TranslatorSignature(
        task="test",
        architecture="hand-made",
        input_format=input_format,
        output_channels=3,
        scale=scale,
        size_multiple=size_multiple,
        train_size=train_size,
        value_range=(-1.0, 1.0),
        config_digest="",
        dynamic_size=dynamic_size,
    )
    return _save(model, path, signature.to_metadata())


def write_label_generator(path: Path, latent_dim: int = 4, classes: int = 3) -> Path:
    """A conditional generator as exported before class weights: latent (N, 4) and label (N,) int64
    -> image (N, 1, 2, 2) = the latent plus the label, clipped to [-1, 1]."""
    from service.signature import Signature

    latent = helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["N", latent_dim])
    label = helper.make_tensor_value_info("label", TensorProto.INT64, ["N"])
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 2, 2])
    shape = helper.make_tensor("shape", TensorProto.INT64, [4], [-1, 1, 2, 2])
    column = helper.make_tensor("column", TensorProto.INT64, [2], [-1, 1])
    nodes = [
        helper.make_node("Cast", ["label"], ["label_f"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["label_f", "column"], ["label_col"]),
        helper.make_node("Add", ["latent", "label_col"], ["summed"]),
        helper.make_node("Clip", ["summed", "low", "high"], ["clipped"]),
        helper.make_node("Reshape", ["clipped", "shape"], ["image"]),
    ]
    bounds = [
        helper.make_tensor("low", TensorProto.FLOAT, [], [-1.0]),
        helper.make_tensor("high", TensorProto.FLOAT, [], [1.0]),
    ]
    graph = helper.make_graph(nodes, "label_generator", [latent, label], [image], [shape, column, *bounds])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    signature = Signature(
        latent_dim=latent_dim,
        class_names=tuple(str(c) for c in range(classes)),
        sample_shape=(1, 2, 2),
        value_range=(-1.0, 1.0),
        config_digest="",
        architecture="hand-made",
    )
    metadata = signature.to_metadata()
    del metadata["gan.label_input"]  # as written before the key existed
    return _save(model, path, metadata)


def write_memory_hog(path: Path) -> Path:
    """y = x * max(x) over x of shape [N, 1] int64, computed by summing max(x) + 1 ones (never an empty sum, which
    CUDA refuses at warm-up's zeros) less one: max(x) = 2**42 cannot allocate."""
    x = helper.make_tensor_value_info("x", TensorProto.INT64, ["N", 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    nodes = [
        helper.make_node("ReduceMax", ["x"], ["largest"], keepdims=0),
        helper.make_node("Add", ["largest", "one_int"], ["largest_plus_one"]),
        helper.make_node("Reshape", ["largest_plus_one", "vector"], ["length"]),
        helper.make_node("ConstantOfShape", ["length"], ["ones"], value=one),
        helper.make_node("ReduceSum", ["ones"], ["total_plus_one"], keepdims=0),
        helper.make_node("Sub", ["total_plus_one", "one_float"], ["total"]),
        helper.make_node("Cast", ["x"], ["real"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["real", "total"], ["y"]),
    ]
    constants = [
        helper.make_tensor("vector", TensorProto.INT64, [1], [1]),
        helper.make_tensor("one_int", TensorProto.INT64, [], [1]),
        helper.make_tensor("one_float", TensorProto.FLOAT, [], [1.0]),
    ]
    graph = helper.make_graph(nodes, "memory_hog", [x], [y], constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return _save(model, path, {})


def write_two_outputs(path: Path) -> Path:
    """y = 2x and z = x + 1 over x of shape [N, 3] float32: a model whose outputs a request can choose from."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 3])
    constants = [
        helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
        helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
    ]
    nodes = [helper.make_node("Mul", ["x", "two"], ["y"]), helper.make_node("Add", ["x", "one"], ["z"])]
    graph = helper.make_graph(nodes, "two_outputs", [x], [y, z], constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return _save(model, path, {})
