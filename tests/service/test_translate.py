"""Translate (image-to-image models) against the real server: formats, padding, limits, batching, V2."""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image

from gan.v1 import generator_pb2 as pb
from gan.v1 import generator_pb2_grpc as pb_grpc
from gan_client.client import decode_tensor
from inference import grpc_service_pb2 as v2
from inference import grpc_service_pb2_grpc as v2_grpc
from tests.conftest import ServerThread, scrape
from tests.service.onnx_models import write_translator

MAX_BYTES = 20_000
MAX_PIXELS = 48 * 48
MAX_IMAGES = 4


@pytest.fixture(scope="module")
def translators(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sr (rgb, x2, multiples of 4), colorize (gray -> rgb), inpaint (rgb+mask), fixed (8x8 only)."""
    root = tmp_path_factory.mktemp("translators")
    write_translator(root / "sr/1/model.onnx", "rgb", scale=2, size_multiple=4)
    write_translator(root / "colorize/1/model.onnx", "gray", scale=1, size_multiple=1)
    write_translator(root / "inpaint/1/model.onnx", "rgb+mask", scale=1, size_multiple=1)
    write_translator(root / "fixed/1/model.onnx", "rgb", scale=1, size_multiple=4, dynamic_size=False)
    # after a run of k samples, sr waits up to 300 ms for k to gather again (a lone request after idling does not)
    (root / "sr/config.json").write_text(json.dumps({"max_queue_delay_ms": 300}))
    return root


@pytest.fixture(scope="module")
def translate_server(translators: Path) -> Iterator[ServerThread]:
    limits = {"translate_max_image_bytes": MAX_BYTES, "translate_max_pixels": MAX_PIXELS}
    with ServerThread(model_repository=translators, translate_max_images=MAX_IMAGES, **limits) as running:
        yield running


@pytest.fixture(scope="module")
def stub(translate_server: ServerThread) -> pb_grpc.GeneratorServiceStub:
    return pb_grpc.GeneratorServiceStub(grpc.insecure_channel(translate_server.target))


def encode(pixels: np.ndarray, format: str = "PNG") -> bytes:
    """(H, W) or (H, W, C) uint8 -> PNG or JPEG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=format)
    return buffer.getvalue()


def rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def translate(stub: pb_grpc.GeneratorServiceStub, model: str, *images: pb.SourceImage, **fields: object) -> np.ndarray:
    request = pb.TranslateRequest(model=model, images=list(images), **fields)  # type: ignore[arg-type]
    reply = stub.Translate(request, timeout=30)
    return decode_tensor(reply)


def png_source(pixels: np.ndarray) -> pb.SourceImage:
    return pb.SourceImage(encoded=encode(pixels))


def raw_source(array: np.ndarray) -> pb.SourceImage:
    pixel_type = pb.PIXEL_TYPE_UINT8 if array.dtype == np.uint8 else pb.PIXEL_TYPE_FLOAT32
    return pb.SourceImage(raw=pb.RawImage(shape=list(array.shape), pixel_type=pixel_type, data=array.tobytes()))


def upscaled(pixels: np.ndarray, scale: int) -> np.ndarray:
    """(H, W, C) -> (C, H * scale, W * scale), nearest neighbour."""
    return pixels.repeat(scale, axis=0).repeat(scale, axis=1).transpose(2, 0, 1)


def status_of(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value


def test_a_translator_describes_itself_and_refuses_generate(stub: pb_grpc.GeneratorServiceStub) -> None:
    info = stub.GetModel(pb.GetModelRequest(name="sr"), timeout=10)
    translator = info.translator
    assert (translator.input_format, translator.input_channels, translator.output_channels) == ("rgb", 3, 3)
    assert (translator.scale, translator.size_multiple, list(translator.train_size)) == (2, 4, [8, 8])
    assert translator.dynamic_size and translator.max_images == MAX_IMAGES and translator.max_pixels == MAX_PIXELS
    assert (info.value_min, info.value_max) == (-1.0, 1.0)
    assert {m.name for m in stub.ListModels(pb.ListModelsRequest(), timeout=10).models} >= {"sr", "inpaint"}
    error = status_of(lambda: stub.Generate(pb.GenerateRequest(model="sr", count=1), timeout=10))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "Translate" in error.details()


def test_png_in_gives_the_upscaled_image_in_every_output_format(stub: pb_grpc.GeneratorServiceStub) -> None:
    pixels = rgb(8, 12)
    as_uint8 = translate(stub, "sr", png_source(pixels), output_format=pb.OUTPUT_FORMAT_UINT8)
    assert as_uint8.shape == (1, 3, 16, 24) and as_uint8.dtype == np.uint8
    np.testing.assert_array_equal(as_uint8[0], upscaled(pixels, 2))
    as_float = translate(stub, "sr", png_source(pixels))
    np.testing.assert_allclose(as_float[0], upscaled(pixels, 2) / 127.5 - 1, atol=1e-6)
    reply = stub.Translate(
        pb.TranslateRequest(model="sr", images=[png_source(pixels)], output_format=pb.OUTPUT_FORMAT_PNG), timeout=30
    )
    assert list(reply.shape) == [1, 3, 16, 24] and len(reply.images) == 1
    np.testing.assert_array_equal(
        np.asarray(Image.open(io.BytesIO(reply.images[0]))), upscaled(pixels, 2).transpose(1, 2, 0)
    )


def test_jpeg_and_raw_inputs(stub: pb_grpc.GeneratorServiceStub) -> None:
    pixels = np.full((8, 8, 3), 200, np.uint8)
    jpeg = translate(stub, "sr", pb.SourceImage(encoded=encode(pixels, "JPEG")), output_format=pb.OUTPUT_FORMAT_UINT8)
    assert jpeg.shape == (1, 3, 16, 16) and np.abs(jpeg.astype(int) - 200).max() <= 3
    raw_uint8 = translate(
        stub, "sr", raw_source(pixels.transpose(2, 0, 1).copy()), output_format=pb.OUTPUT_FORMAT_UINT8
    )
    np.testing.assert_array_equal(raw_uint8[0], upscaled(pixels, 2))
    floats = np.linspace(-1, 1, 3 * 4 * 8, dtype=np.float32).reshape(3, 4, 8)
    raw_float = translate(stub, "sr", raw_source(floats))
    np.testing.assert_array_equal(raw_float[0], floats.repeat(2, axis=1).repeat(2, axis=2))


def test_uint8_and_png_outputs_clip_values_beyond_the_range(stub: pb_grpc.GeneratorServiceStub) -> None:
    """A model may overshoot its value range (sr passes raw floats through): 1.5 is white and
    -1.5 black in uint8 and PNG replies, not wrapped around to the other end."""
    floats = np.full((3, 4, 4), 1.5, np.float32)
    floats[:, :2] = -1.5
    as_uint8 = translate(stub, "sr", raw_source(floats), output_format=pb.OUTPUT_FORMAT_UINT8)[0]
    request = pb.TranslateRequest(model="sr", images=[raw_source(floats)], output_format=pb.OUTPUT_FORMAT_PNG)
    as_png = np.asarray(Image.open(io.BytesIO(stub.Translate(request, timeout=30).images[0]))).transpose(2, 0, 1)
    for image in (as_uint8, as_png):
        assert (image[:, :4] == 0).all() and (image[:, 4:] == 255).all()


def test_sizes_that_are_not_multiples_are_padded_and_cropped_back(stub: pb_grpc.GeneratorServiceStub) -> None:
    pixels = rgb(7, 5, seed=1)  # size_multiple 4: runs at 8x8, returns 14x10
    out = translate(
        stub, "sr", png_source(pixels), png_source(pixels[::-1].copy()), output_format=pb.OUTPUT_FORMAT_UINT8
    )
    assert out.shape == (2, 3, 14, 10)
    np.testing.assert_array_equal(out[0], upscaled(pixels, 2))
    np.testing.assert_array_equal(out[1], upscaled(pixels[::-1], 2))


def test_input_formats_convert_colour_grey_and_alpha(stub: pb_grpc.GeneratorServiceStub) -> None:
    colour = rgb(6, 6, seed=2)
    grey = np.asarray(Image.fromarray(colour).convert("L"))
    from_colour = translate(stub, "colorize", png_source(colour), output_format=pb.OUTPUT_FORMAT_UINT8)
    np.testing.assert_array_equal(from_colour[0], np.stack([grey] * 3))  # converted to grey, then replicated
    to_rgb = translate(stub, "sr", png_source(grey), output_format=pb.OUTPUT_FORMAT_UINT8)
    np.testing.assert_array_equal(to_rgb[0], upscaled(np.stack([grey] * 3, axis=2), 2))
    rgba = np.concatenate([colour, np.full((6, 6, 1), 255, np.uint8)], axis=2)
    rgba[:3, :, 3] = 0  # the top half is a hole
    filled = translate(stub, "inpaint", png_source(rgba), output_format=pb.OUTPUT_FORMAT_UINT8)
    np.testing.assert_array_equal(filled[0, :, 3:], colour[3:].transpose(2, 0, 1))
    assert (filled[0, :, :3] == 128).all()  # colours x mask 0 = 0, the middle of [-1, 1]
    opaque = translate(stub, "inpaint", png_source(colour), output_format=pb.OUTPUT_FORMAT_UINT8)
    np.testing.assert_array_equal(opaque[0], colour.transpose(2, 0, 1))  # no alpha: every pixel known
    raw_rgba = rgba.transpose(2, 0, 1).copy()
    from_raw = translate(stub, "inpaint", raw_source(raw_rgba), raw_source(raw_rgba[:3].copy()), output_format=2)
    np.testing.assert_array_equal(from_raw[0], filled[0])  # uint8 mask channel: 128 and above is known
    np.testing.assert_array_equal(from_raw[1], opaque[0])  # no mask channel: every pixel known
    floats = np.concatenate([raw_rgba[:3] / np.float32(127.5) - 1, (raw_rgba[3:] > 0).astype(np.float32)])
    np.testing.assert_array_equal(translate(stub, "inpaint", raw_source(floats), output_format=2)[0], filled[0])


def test_raw_colour_reaches_a_grey_model_as_its_luminance(stub: pb_grpc.GeneratorServiceStub) -> None:
    colour = rgb(6, 6, seed=5)
    from_png = translate(stub, "colorize", png_source(colour), output_format=pb.OUTPUT_FORMAT_UINT8)
    raw = raw_source(colour.transpose(2, 0, 1).copy())
    from_raw = translate(stub, "colorize", raw, output_format=pb.OUTPUT_FORMAT_UINT8)
    assert np.abs(from_raw.astype(int) - from_png.astype(int)).max() <= 1  # as Pillow's convert("L"), to rounding


def test_a_png_with_a_transparent_colour_gives_inpaint_its_holes(stub: pb_grpc.GeneratorServiceStub) -> None:
    """A PNG without an alpha channel may still mark one colour transparent (its tRNS chunk)."""
    grey = np.full((6, 6), 200, np.uint8)
    grey[:3] = 0  # the top half: the transparent colour
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="PNG", transparency=0)
    filled = translate(stub, "inpaint", pb.SourceImage(encoded=buffer.getvalue()), output_format=2)
    assert (filled[0, :, :3] == 128).all(), "unknown pixels: colours x mask 0, the middle of [-1, 1]"
    assert (filled[0, :, 3:] == 200).all()


def png_of_size(size: int) -> bytes:
    """An 8x8 PNG padded to exactly `size` bytes with a private ancillary chunk (readers skip it)."""
    image = encode(rgb(8, 8))
    filler = size - len(image) - 12
    body = b"fiLl" + bytes(filler)
    chunk = struct.pack(">I", filler) + body + struct.pack(">I", zlib.crc32(body))
    return image[:33] + chunk + image[33:]  # after the signature and IHDR


def test_an_image_of_exactly_the_byte_limit_is_taken(stub: pb_grpc.GeneratorServiceStub) -> None:
    image = png_of_size(MAX_BYTES)
    assert len(image) == MAX_BYTES
    assert translate(stub, "sr", pb.SourceImage(encoded=image)).shape == (1, 3, 16, 16)


def test_a_fixed_size_model_takes_only_its_train_size(stub: pb_grpc.GeneratorServiceStub) -> None:
    assert translate(stub, "fixed", png_source(rgb(8, 8))).shape == (1, 3, 8, 8)
    error = status_of(lambda: translate(stub, "fixed", png_source(rgb(12, 12))))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "8x8" in error.details()


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height` pixels but holds only a few bytes of data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _truncated_png() -> bytes:
    whole = encode(rgb(16, 16))
    return whole[: len(whole) // 2]


BAD_IMAGES = {
    "corrupt bytes": ([pb.SourceImage(encoded=b"definitely not a png")], "images[0].encoded"),
    "truncated PNG": ([pb.SourceImage(encoded=_truncated_png())], "images[0].encoded"),
    "too many bytes": ([png_source(rgb(8, 8)), pb.SourceImage(encoded=b"\x89PNG" + bytes(MAX_BYTES))], "images[1]"),
    "too many pixels": ([png_source(np.zeros((60, 60), np.uint8))], "GAN_TRANSLATE_MAX_PIXELS"),
    "a bomb's header": ([pb.SourceImage(encoded=png_header(50_000, 50_000))], "GAN_TRANSLATE_MAX_PIXELS"),
    "a huge bomb's header": ([pb.SourceImage(encoded=png_header(2**30, 2**30))], "GAN_TRANSLATE_MAX_PIXELS"),
    "output too large": ([png_source(np.zeros((40, 40), np.uint8))], "GAN_TRANSLATE_MAX_PIXELS"),
    "outputs too large together": ([png_source(rgb(20, 20))] * 2, "3200 pixels, over the limit of 2304 per request"),
    "mixed sizes": ([png_source(rgb(8, 8)), png_source(rgb(8, 12))], "images[1]"),
    "wrong raw channels": ([raw_source(np.zeros((2, 8, 8), np.uint8))], "images[0].raw.shape[0]"),
    "a mask for an rgb model": ([raw_source(np.zeros((4, 8, 8), np.uint8))], "images[0].raw.shape[0]"),
    "wrong raw length": (
        [pb.SourceImage(raw=pb.RawImage(shape=[3, 8, 8], pixel_type=pb.PIXEL_TYPE_UINT8, data=bytes(10)))],
        "images[0].raw.data",
    ),
    "no pixel type": ([pb.SourceImage(raw=pb.RawImage(shape=[3, 8, 8], data=bytes(192)))], "pixel_type"),
    "a NaN in raw floats": (
        [raw_source(np.full((3, 8, 8), np.nan, np.float32))],
        "images[0].raw.data: values must be finite",
    ),
    "too many images": ([png_source(rgb(4, 4))] * (MAX_IMAGES + 1), "GAN_TRANSLATE_MAX_IMAGES"),
    "no images": ([], "images"),
}


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_bad_images_get_invalid_argument_naming_the_field_and_limit(
    stub: pb_grpc.GeneratorServiceStub, name: str
) -> None:
    images, expected = BAD_IMAGES[name]
    error = status_of(lambda: stub.Translate(pb.TranslateRequest(model="sr", images=images), timeout=30))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert expected in error.details(), error.details()


def test_limits_are_named_in_the_messages(stub: pb_grpc.GeneratorServiceStub) -> None:
    big = pb.SourceImage(encoded=bytes(MAX_BYTES + 1))
    error = status_of(lambda: stub.Translate(pb.TranslateRequest(model="sr", images=[big]), timeout=30))
    assert "GAN_TRANSLATE_MAX_IMAGE_BYTES" in error.details() and str(MAX_BYTES) in error.details()


def v2_request(source: np.ndarray, model: str = "sr") -> v2.ModelInferRequest:
    message = v2.ModelInferRequest(model_name=model)
    message.inputs.add(name="source", datatype="FP32", shape=source.shape)
    message.raw_input_contents.append(source.tobytes())
    return message


def test_concurrent_same_size_requests_share_runs_and_other_sizes_do_not_disturb_them(
    stub: pb_grpc.GeneratorServiceStub, translate_server: ServerThread
) -> None:
    """After a run of 8 samples the model waits (up to 300 ms) for 8 to gather again; Translate and V2
    requests of two sizes sent at once then share runs by size (gan.v1 and V2 together), each reply right."""
    infer = v2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(translate_server.target))
    infer.ModelInfer(v2_request(np.zeros((8, 3, 8, 8), np.float32)), timeout=30)
    small, large = rgb(8, 8, seed=3), rgb(12, 12, seed=4)
    requests = {
        id(pixels): pb.TranslateRequest(model="sr", images=[png_source(pixels)], output_format=pb.OUTPUT_FORMAT_UINT8)
        for pixels in (small, large)
    }
    order = [small if index % 2 else large for index in range(12)]
    small_v2 = (small.transpose(2, 0, 1)[None] / np.float32(127.5) - 1).astype(np.float32)
    before = scrape(translate_server)
    calls = [(pixels, stub.Translate.future(requests[id(pixels)], timeout=30)) for pixels in order]  # all at once
    via_v2 = infer.ModelInfer.future(v2_request(small_v2), timeout=30)
    for pixels, call in calls:
        np.testing.assert_array_equal(decode_tensor(call.result())[0], upscaled(pixels, 2))
    v2_image = np.frombuffer(via_v2.result().raw_output_contents[0], "<f4").reshape(1, 3, 16, 16)
    np.testing.assert_allclose(v2_image[0], upscaled(small, 2) / 127.5 - 1, atol=1e-6)
    after = scrape(translate_server)
    key = 'gan_batch_size_samples_{}{{model="sr"}}'
    runs = after[key.format("count")] - before[key.format("count")]
    samples = after[key.format("sum")] - before[key.format("sum")]
    assert samples == 13
    assert runs <= 6, f"{runs} runs for 13 requests of two sizes: requests of one size should share runs"
    assert after['gan_requests_total{code="OK",method="Translate",model="sr"}'] >= 12


def test_v2_model_infer_takes_any_allowed_size_and_refuses_the_others(translate_server: ServerThread) -> None:
    infer = v2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(translate_server.target))

    def request(height: int, width: int) -> v2.ModelInferRequest:
        return v2_request(np.random.default_rng(0).uniform(-1, 1, (2, 3, height, width)).astype(np.float32))

    reply = infer.ModelInfer(request(12, 16), timeout=30)
    image = np.frombuffer(reply.raw_output_contents[0], "<f4").reshape(tuple(reply.outputs[0].shape))
    assert image.shape == (2, 3, 24, 32)
    error = status_of(lambda: infer.ModelInfer(request(6, 8), timeout=30))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "inputs[0]" in error.details() and "multiples of 4" in error.details()
    huge = status_of(lambda: infer.ModelInfer(request(32, 32), timeout=30))  # 64x64 out, over 48x48
    assert huge.code() == grpc.StatusCode.INVALID_ARGUMENT and "GAN_TRANSLATE_MAX_PIXELS" in huge.details()


def test_a_translation_whose_reply_would_not_fit_is_refused_before_it_runs(translators: Path) -> None:
    with ServerThread(model_repository=translators, max_reply_mib=1, translate_max_pixels=2**20) as small:
        stub = pb_grpc.GeneratorServiceStub(grpc.insecure_channel(small.target))
        request = pb.TranslateRequest(model="sr", images=[png_source(rgb(256, 256))])  # 512x512x3 float32: 3 MiB
        error = status_of(lambda: stub.Translate(request, timeout=30))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert "GAN_MAX_REPLY_MIB" in error.details() and error.details().startswith("images:")
        request.output_format = pb.OUTPUT_FORMAT_UINT8  # 768 KiB: fits
        assert decode_tensor(stub.Translate(request, timeout=30)).shape == (1, 3, 512, 512)


def test_v2_sources_hold_colours_in_range_and_a_binary_mask(translate_server: ServerThread) -> None:
    """gan.v1 thresholds a mask and scales colours; a raw V2 tensor must already be what the model was trained on."""
    infer = v2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(translate_server.target))
    source = np.zeros((1, 4, 8, 8), np.float32)
    source[:, 3] = 1.0
    assert infer.ModelInfer(v2_request(source, "inpaint"), timeout=30).outputs[0].name == "image"
    half = source.copy()
    half[0, 3, 0, 0] = 0.5
    error = status_of(lambda: infer.ModelInfer(v2_request(half, "inpaint"), timeout=30))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "mask value 0.5" in error.details()
    bright = source.copy()
    bright[0, 0, 0, 0] = 50.0
    error = status_of(lambda: infer.ModelInfer(v2_request(bright, "inpaint"), timeout=30))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "outside the model's value range" in error.details()
