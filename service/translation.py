"""The data plane of Translate: client images -> the translator's `source` tensor -> images.

Images arrive encoded (PNG, JPEG) or raw (C, H, W), are checked against the limits before
any pixel is decoded (the header says the size: no decompression bomb gets decoded), turned
into the model's input format, padded (edge) up to a multiple of size_multiple, run through
the batcher like any request, and cropped back to H * scale by W * scale.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from service.batcher import Priority
from service.encoding import REPLY_OVERHEAD_BYTES, ReplyFormat, image_reply_bytes, upright_8bit
from service.errors import InvalidInput, ModelUnsupported, naming
from service.repository import ModelVersion, Repository
from service.translator_signature import IMAGE_OUTPUT, SOURCE_INPUT, TranslatorSignature

FORMATS = ("PNG", "JPEG")
INLINE_RAW_BYTES = 256 * 1024  # raw images up to this many bytes in all are converted on the event loop
_MASK_THRESHOLD = 128  # alpha (or a uint8 mask) at or above this is a known pixel
_MODES = {"gray": "L", "rgb": "RGB", "rgb+mask": "RGBA"}
_RAW_DTYPES: dict[str, np.dtype] = {"uint8": np.dtype("u1"), "float32": np.dtype("<f4")}


@dataclass(frozen=True)
class TranslateLimits:
    max_images: int
    max_image_bytes: int
    max_pixels: int  # height x width of one input image, and of a request's output images together
    max_reply_bytes: int = 64 * 2**20  # GAN_MAX_REPLY_MIB


@dataclass(frozen=True)
class RawPixels:
    shape: tuple[int, ...]  # (C, H, W)
    pixel_type: str  # a key of _RAW_DTYPES
    data: bytes


SourceImage = bytes | RawPixels  # encoded PNG/JPEG bytes, or raw pixels


@dataclass(frozen=True)
class TranslationRequest:
    model: str
    version: int
    images: tuple[SourceImage, ...]
    priority: Priority | None = None
    reply_format: ReplyFormat = "float32"  # how the reply carries the images


@dataclass(frozen=True)
class TranslationResult:
    model: ModelVersion
    signature: TranslatorSignature
    images: np.ndarray  # (N, C_out, H * scale, W * scale) float32 in the signature's value_range


def translator_signature(model: ModelVersion) -> TranslatorSignature:
    signature = model.runtime.translator
    if signature is None:
        raise ModelUnsupported(
            f"model: {model.name} is not an image-to-image model; call Generate (or GenerateRows) for its samples"
        )
    return signature


class TranslationService:
    def __init__(self, repository: Repository, limits: TranslateLimits) -> None:
        self._repository = repository
        self._limits = limits

    @property
    def limits(self) -> TranslateLimits:
        return self._limits

    async def translate(self, request: TranslationRequest, deadline: float | None) -> TranslationResult:
        with naming("model"):
            model = self._repository.get(request.model, request.version)
        signature = translator_signature(model)
        count = len(request.images)
        if not 1 <= count <= self._limits.max_images:
            raise InvalidInput(
                f"images: {count} images; send between 1 and {self._limits.max_images} "
                "(GAN_TRANSLATE_MAX_IMAGES) per request"
            )
        model.batcher.check_room(count)
        with self._repository.holding(model):  # a reload during the decode retires it only afterwards
            if _decodes_inline(request.images):
                padded, (height, width) = self._sources(request.images, signature)
            else:  # decoding a large or compressed image would hold the event loop (and every other call) up
                padded, (height, width) = await asyncio.to_thread(self._sources, request.images, signature)
            self._check_reply_size(len(request.images), height, width, signature, request.reply_format)
            priority = request.priority or model.config.priority
            model, outputs = await self._repository.submit(
                model, {SOURCE_INPUT: padded}, deadline, priority, pinned=request.version != 0
            )
        out_height, out_width = signature.output_size(height, width)
        images = np.ascontiguousarray(outputs[IMAGE_OUTPUT][:, :, :out_height, :out_width])
        return TranslationResult(model=model, signature=signature, images=images)

    def _check_reply_size(
        self, count: int, height: int, width: int, signature: TranslatorSignature, reply_format: ReplyFormat
    ) -> None:
        """Refuse, before the run, images whose reply would exceed GAN_MAX_REPLY_MIB (gRPC would refuse
        it after the run as RESOURCE_EXHAUSTED, which clients retry)."""
        out_height, out_width = signature.output_size(height, width)
        size = count * image_reply_bytes(signature.output_channels, out_height, out_width, reply_format)
        if size + REPLY_OVERHEAD_BYTES > self._limits.max_reply_bytes:
            limit_mib = self._limits.max_reply_bytes / 2**20
            raise InvalidInput(
                f"images: {count} outputs of {out_height}x{out_width} as {reply_format} need up to "
                f"{size / 2**20:.1f} MiB, over the reply limit of {limit_mib:g} MiB (GAN_MAX_REPLY_MIB); "
                "send fewer images per call, or ask for PNG output"
            )

    def _sources(
        self, images: tuple[SourceImage, ...], signature: TranslatorSignature
    ) -> tuple[np.ndarray, tuple[int, int]]:
        """The request's images as one padded (N, C_in, H', W') batch, and their (H, W)."""
        sources = [self._decode(f"images[{i}]", image, signature) for i, image in enumerate(images)]
        height, width = _one_size(sources)
        self._check_output_size(len(sources), height, width, signature)
        return pad_to_multiple(np.stack(sources), signature), (height, width)

    def _decode(self, where: str, image: SourceImage, signature: TranslatorSignature) -> np.ndarray:
        """One image as the model's source (C_in, H, W) float32."""
        size = len(image) if isinstance(image, bytes) else len(image.data)
        if size > self._limits.max_image_bytes:
            raise InvalidInput(
                f"{where}: {size} bytes is over the limit of {self._limits.max_image_bytes} "
                "(GAN_TRANSLATE_MAX_IMAGE_BYTES); send a smaller image"
            )
        if isinstance(image, bytes):
            return self._decode_encoded(where, image, signature)
        return self._decode_raw(where, image, signature)

    def _check_pixels(self, where: str, height: int, width: int, what: str = "") -> None:
        if height * width > self._limits.max_pixels:
            raise InvalidInput(
                f"{where}: {what}{height}x{width} is {height * width} pixels, over the limit of "
                f"{self._limits.max_pixels} (GAN_TRANSLATE_MAX_PIXELS); send a smaller image"
            )

    def _decode_encoded(self, where: str, data: bytes, signature: TranslatorSignature) -> np.ndarray:
        if not data:
            raise InvalidInput(f"{where}.encoded: empty; send PNG or JPEG bytes, or a raw image")
        # No warnings.catch_warnings() here: it is not thread-safe, and large images decode in worker
        # threads. Pillow only warns between MAX_IMAGE_PIXELS and twice that; our limit is checked next.
        try:
            opened = Image.open(io.BytesIO(data), formats=FORMATS)  # reads the header only
            width, height = opened.size
            self._check_pixels(f"{where}.encoded", height, width)
            opened.load()
        except Image.DecompressionBombError as exc:
            # Pillow's own guard, at open, for sizes far beyond ours
            raise InvalidInput(
                f"{where}.encoded: {exc}; the limit is {self._limits.max_pixels} pixels (GAN_TRANSLATE_MAX_PIXELS)"
            ) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise InvalidInput(
                f"{where}.encoded: not a readable PNG or JPEG image ({exc}); send PNG or JPEG bytes"
            ) from None
        return _from_pil(upright_8bit(opened), signature)

    def _decode_raw(self, where: str, raw: RawPixels, signature: TranslatorSignature) -> np.ndarray:
        dtype = _RAW_DTYPES.get(raw.pixel_type)
        if dtype is None:
            raise InvalidInput(f"{where}.raw.pixel_type: give PIXEL_TYPE_UINT8 or PIXEL_TYPE_FLOAT32")
        if len(raw.shape) != 3 or min(raw.shape) < 1:
            raise InvalidInput(f"{where}.raw.shape: {list(raw.shape)}; give (channels, height, width), each positive")
        channels, height, width = raw.shape
        allowed = _raw_channels(signature)
        if channels not in allowed:
            raise InvalidInput(
                f"{where}.raw.shape[0]: {channels} channels; model input format {signature.input_format} "
                f"takes {' or '.join(str(c) for c in allowed)}"
            )
        self._check_pixels(f"{where}.raw", height, width)
        expected = channels * height * width * dtype.itemsize
        if len(raw.data) != expected:
            raise InvalidInput(
                f"{where}.raw.data: {len(raw.data)} bytes; shape {list(raw.shape)} of {raw.pixel_type} needs {expected}"
            )
        pixels = np.frombuffer(raw.data, dtype=dtype).reshape(raw.shape)
        if dtype.kind == "f" and not np.isfinite(pixels).all():
            raise InvalidInput(f"{where}.raw.data: values must be finite float32 numbers")
        return _from_raw(pixels, signature)

    def _check_output_size(self, count: int, height: int, width: int, signature: TranslatorSignature) -> None:
        out_height, out_width = signature.output_size(height, width)
        self._check_pixels("images", out_height, out_width, what="the output of ")
        total = count * out_height * out_width
        if total > self._limits.max_pixels:  # what a run allocates grows with all of them together
            raise InvalidInput(
                f"images: {count} outputs of {out_height}x{out_width} are {total} pixels, over the limit of "
                f"{self._limits.max_pixels} per request (GAN_TRANSLATE_MAX_PIXELS); send fewer or smaller images"
            )
        if not signature.dynamic_size and (height, width) != signature.train_size:
            train = f"{signature.train_size[0]}x{signature.train_size[1]}"
            raise InvalidInput(f"images: {height}x{width}; this model only takes {train} images (its train_size)")


def _decodes_inline(images: tuple[SourceImage, ...]) -> bool:
    """Small raw images are quicker to convert on the event loop than to hand to a thread and back."""
    return (
        all(isinstance(image, RawPixels) for image in images)
        and sum(len(image.data) for image in images if isinstance(image, RawPixels)) <= INLINE_RAW_BYTES
    )


def _one_size(sources: list[np.ndarray]) -> tuple[int, int]:
    height, width = sources[0].shape[1:]
    for index, source in enumerate(sources):
        if source.shape[1:] != (height, width):
            raise InvalidInput(
                f"images[{index}]: {source.shape[1]}x{source.shape[2]} differs from images[0]'s {height}x{width}; "
                "the images of one request must share one size (send others in another request)"
            )
    return int(height), int(width)


def pad_to_multiple(batch: np.ndarray, signature: TranslatorSignature) -> np.ndarray:
    """(N, C, H, W) -> (N, C, H', W') with H', W' the next multiples of size_multiple, edge-padded."""
    multiple = signature.size_multiple
    height, width = batch.shape[2:]
    extra_h, extra_w = -height % multiple, -width % multiple
    if not (extra_h or extra_w):
        return batch
    return np.pad(batch, ((0, 0), (0, 0), (0, extra_h), (0, extra_w)), mode="edge")


def _raw_channels(signature: TranslatorSignature) -> tuple[int, ...]:
    if signature.input_format == "rgb+mask":
        return (1, 3, 4)  # without a mask channel every pixel is known, as in an image without alpha
    return (1, 3)  # grey or colour: converted to what the model takes


def _to_range(unit: np.ndarray, signature: TranslatorSignature) -> np.ndarray:
    """[0, 1] -> value_range, float32."""
    low, high = signature.value_range
    return (unit * (high - low) + low).astype(np.float32)


def _from_pil(image: Image.Image, signature: TranslatorSignature) -> np.ndarray:
    """A decoded image -> (C_in, H, W) float32: colours in value_range, a mask channel in {0, 1}."""
    mode = _MODES[signature.input_format]
    if mode == "RGBA" and "A" not in image.getbands() and "transparency" not in image.info:
        pixels = np.asarray(image.convert("RGB"))  # no alpha: every pixel is known
        mask = np.ones(pixels.shape[:2], dtype=np.float32)
    elif mode == "RGBA":
        rgba = np.asarray(image.convert("RGBA"))
        pixels, mask = rgba[:, :, :3], (rgba[:, :, 3] >= _MASK_THRESHOLD).astype(np.float32)
    else:
        pixels, mask = np.asarray(image.convert(mode)), None
    colours = _to_range(np.atleast_3d(pixels).transpose(2, 0, 1) / np.float32(255), signature)
    if mask is None:
        return colours
    return np.concatenate([colours, mask[None]])


def _from_raw(pixels: np.ndarray, signature: TranslatorSignature) -> np.ndarray:
    """Raw (C, H, W) uint8 or float32 -> (C_in, H, W) float32 as the model takes it."""
    floating = pixels.dtype.kind == "f"
    colours = _colours(pixels[:3], signature)
    if signature.input_format == "gray" and len(colours) == 3:
        colours = _grey(colours)
    elif signature.input_format != "gray" and len(colours) == 1:
        colours = np.repeat(colours, 3, axis=0)
    if signature.input_format != "rgb+mask":
        return colours
    if len(pixels) == 4:
        mask = pixels[3] >= 0.5 if floating else pixels[3] >= _MASK_THRESHOLD
    else:
        mask = np.ones(pixels.shape[1:], dtype=bool)
    return np.concatenate([colours, mask[None].astype(np.float32)])


def _colours(pixels: np.ndarray, signature: TranslatorSignature) -> np.ndarray:
    if pixels.dtype.kind == "f":
        return pixels.astype(np.float32)
    return _to_range(pixels / np.float32(255), signature)


def _grey(rgb: np.ndarray) -> np.ndarray:
    """(3, H, W) -> (1, H, W) luminance with ITU-R 601 weights, as Pillow's convert("L")."""
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)[:, None, None]
    return (rgb * weights).sum(axis=0, keepdims=True, dtype=np.float32)
