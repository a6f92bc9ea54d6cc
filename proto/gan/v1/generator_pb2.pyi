from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OutputFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_FORMAT_UNSPECIFIED: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_FLOAT32: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_UINT8: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_PNG: _ClassVar[OutputFormat]

class InterpolationMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INTERPOLATION_METHOD_UNSPECIFIED: _ClassVar[InterpolationMethod]
    INTERPOLATION_METHOD_LINEAR: _ClassVar[InterpolationMethod]
    INTERPOLATION_METHOD_SPHERICAL: _ClassVar[InterpolationMethod]

class PixelType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PIXEL_TYPE_UNSPECIFIED: _ClassVar[PixelType]
    PIXEL_TYPE_UINT8: _ClassVar[PixelType]
    PIXEL_TYPE_FLOAT32: _ClassVar[PixelType]
OUTPUT_FORMAT_UNSPECIFIED: OutputFormat
OUTPUT_FORMAT_FLOAT32: OutputFormat
OUTPUT_FORMAT_UINT8: OutputFormat
OUTPUT_FORMAT_PNG: OutputFormat
INTERPOLATION_METHOD_UNSPECIFIED: InterpolationMethod
INTERPOLATION_METHOD_LINEAR: InterpolationMethod
INTERPOLATION_METHOD_SPHERICAL: InterpolationMethod
PIXEL_TYPE_UNSPECIFIED: PixelType
PIXEL_TYPE_UINT8: PixelType
PIXEL_TYPE_FLOAT32: PixelType

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "version", "versions", "latent_dim", "class_names", "sample_shape", "value_min", "value_max", "max_count", "config_digest", "columns", "translator")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    LATENT_DIM_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_SHAPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_MIN_FIELD_NUMBER: _ClassVar[int]
    VALUE_MAX_FIELD_NUMBER: _ClassVar[int]
    MAX_COUNT_FIELD_NUMBER: _ClassVar[int]
    CONFIG_DIGEST_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    TRANSLATOR_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    versions: _containers.RepeatedScalarFieldContainer[int]
    latent_dim: int
    class_names: _containers.RepeatedScalarFieldContainer[str]
    sample_shape: _containers.RepeatedScalarFieldContainer[int]
    value_min: float
    value_max: float
    max_count: int
    config_digest: str
    columns: _containers.RepeatedCompositeFieldContainer[TableColumnInfo]
    translator: TranslatorInfo
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., versions: _Optional[_Iterable[int]] = ..., latent_dim: _Optional[int] = ..., class_names: _Optional[_Iterable[str]] = ..., sample_shape: _Optional[_Iterable[int]] = ..., value_min: _Optional[float] = ..., value_max: _Optional[float] = ..., max_count: _Optional[int] = ..., config_digest: _Optional[str] = ..., columns: _Optional[_Iterable[_Union[TableColumnInfo, _Mapping]]] = ..., translator: _Optional[_Union[TranslatorInfo, _Mapping]] = ...) -> None: ...

class TranslatorInfo(_message.Message):
    __slots__ = ("task", "input_format", "input_channels", "output_channels", "scale", "size_multiple", "train_size", "dynamic_size", "max_images", "max_pixels", "max_image_bytes", "architecture")
    TASK_FIELD_NUMBER: _ClassVar[int]
    INPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    INPUT_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    SIZE_MULTIPLE_FIELD_NUMBER: _ClassVar[int]
    TRAIN_SIZE_FIELD_NUMBER: _ClassVar[int]
    DYNAMIC_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    task: str
    input_format: str
    input_channels: int
    output_channels: int
    scale: int
    size_multiple: int
    train_size: _containers.RepeatedScalarFieldContainer[int]
    dynamic_size: bool
    max_images: int
    max_pixels: int
    max_image_bytes: int
    architecture: str
    def __init__(self, task: _Optional[str] = ..., input_format: _Optional[str] = ..., input_channels: _Optional[int] = ..., output_channels: _Optional[int] = ..., scale: _Optional[int] = ..., size_multiple: _Optional[int] = ..., train_size: _Optional[_Iterable[int]] = ..., dynamic_size: _Optional[bool] = ..., max_images: _Optional[int] = ..., max_pixels: _Optional[int] = ..., max_image_bytes: _Optional[int] = ..., architecture: _Optional[str] = ...) -> None: ...

class TableColumnInfo(_message.Message):
    __slots__ = ("name", "kind", "categories", "nullable")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    NULLABLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    categories: _containers.RepeatedScalarFieldContainer[str]
    nullable: bool
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., categories: _Optional[_Iterable[str]] = ..., nullable: _Optional[bool] = ...) -> None: ...

class Latents(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("model", "version", "count", "seed", "latents", "labels", "output_format", "priority", "truncation")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    LATENTS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    count: int
    seed: int
    latents: Latents
    labels: _containers.RepeatedScalarFieldContainer[int]
    output_format: OutputFormat
    priority: int
    truncation: float
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., count: _Optional[int] = ..., seed: _Optional[int] = ..., latents: _Optional[_Union[Latents, _Mapping]] = ..., labels: _Optional[_Iterable[int]] = ..., output_format: _Optional[_Union[OutputFormat, str]] = ..., priority: _Optional[int] = ..., truncation: _Optional[float] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("model", "version", "seed", "labels", "output_format", "shape", "tensor", "images")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    seed: int
    labels: _containers.RepeatedScalarFieldContainer[int]
    output_format: OutputFormat
    shape: _containers.RepeatedScalarFieldContainer[int]
    tensor: bytes
    images: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., seed: _Optional[int] = ..., labels: _Optional[_Iterable[int]] = ..., output_format: _Optional[_Union[OutputFormat, str]] = ..., shape: _Optional[_Iterable[int]] = ..., tensor: _Optional[bytes] = ..., images: _Optional[_Iterable[bytes]] = ...) -> None: ...

class LatentEndpoint(_message.Message):
    __slots__ = ("seed", "latent", "label")
    SEED_FIELD_NUMBER: _ClassVar[int]
    LATENT_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    seed: int
    latent: Latents
    label: int
    def __init__(self, seed: _Optional[int] = ..., latent: _Optional[_Union[Latents, _Mapping]] = ..., label: _Optional[int] = ...) -> None: ...

class InterpolateRequest(_message.Message):
    __slots__ = ("model", "version", "start", "end", "steps", "method", "truncation", "output_format", "priority")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    TRUNCATION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    start: LatentEndpoint
    end: LatentEndpoint
    steps: int
    method: InterpolationMethod
    truncation: float
    output_format: OutputFormat
    priority: int
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., start: _Optional[_Union[LatentEndpoint, _Mapping]] = ..., end: _Optional[_Union[LatentEndpoint, _Mapping]] = ..., steps: _Optional[int] = ..., method: _Optional[_Union[InterpolationMethod, str]] = ..., truncation: _Optional[float] = ..., output_format: _Optional[_Union[OutputFormat, str]] = ..., priority: _Optional[int] = ...) -> None: ...

class InterpolateResponse(_message.Message):
    __slots__ = ("model", "version", "output_format", "shape", "tensor", "images", "class_weights")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    CLASS_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    output_format: OutputFormat
    shape: _containers.RepeatedScalarFieldContainer[int]
    tensor: bytes
    images: _containers.RepeatedScalarFieldContainer[bytes]
    class_weights: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., output_format: _Optional[_Union[OutputFormat, str]] = ..., shape: _Optional[_Iterable[int]] = ..., tensor: _Optional[bytes] = ..., images: _Optional[_Iterable[bytes]] = ..., class_weights: _Optional[_Iterable[float]] = ...) -> None: ...

class RawImage(_message.Message):
    __slots__ = ("shape", "pixel_type", "data")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    PIXEL_TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    pixel_type: PixelType
    data: bytes
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., pixel_type: _Optional[_Union[PixelType, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class SourceImage(_message.Message):
    __slots__ = ("encoded", "raw")
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    encoded: bytes
    raw: RawImage
    def __init__(self, encoded: _Optional[bytes] = ..., raw: _Optional[_Union[RawImage, _Mapping]] = ...) -> None: ...

class TranslateRequest(_message.Message):
    __slots__ = ("model", "version", "images", "output_format", "priority")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    images: _containers.RepeatedCompositeFieldContainer[SourceImage]
    output_format: OutputFormat
    priority: int
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., images: _Optional[_Iterable[_Union[SourceImage, _Mapping]]] = ..., output_format: _Optional[_Union[OutputFormat, str]] = ..., priority: _Optional[int] = ...) -> None: ...

class TranslateResponse(_message.Message):
    __slots__ = ("model", "version", "output_format", "shape", "tensor", "images")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    output_format: OutputFormat
    shape: _containers.RepeatedScalarFieldContainer[int]
    tensor: bytes
    images: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., output_format: _Optional[_Union[OutputFormat, str]] = ..., shape: _Optional[_Iterable[int]] = ..., tensor: _Optional[bytes] = ..., images: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GenerateRowsRequest(_message.Message):
    __slots__ = ("model", "version", "count", "seed", "conditions", "chunk_rows")
    class ConditionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_ROWS_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    count: int
    seed: int
    conditions: _containers.ScalarMap[str, str]
    chunk_rows: int
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., count: _Optional[int] = ..., seed: _Optional[int] = ..., conditions: _Optional[_Mapping[str, str]] = ..., chunk_rows: _Optional[int] = ...) -> None: ...

class GenerateRowsResponse(_message.Message):
    __slots__ = ("model", "version", "seed", "rows", "columns", "offset")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    seed: int
    rows: int
    columns: _containers.RepeatedCompositeFieldContainer[TableColumn]
    offset: int
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., seed: _Optional[int] = ..., rows: _Optional[int] = ..., columns: _Optional[_Iterable[_Union[TableColumn, _Mapping]]] = ..., offset: _Optional[int] = ...) -> None: ...

class TableColumn(_message.Message):
    __slots__ = ("name", "kind", "doubles", "integers", "strings", "booleans", "missing")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DOUBLES_FIELD_NUMBER: _ClassVar[int]
    INTEGERS_FIELD_NUMBER: _ClassVar[int]
    STRINGS_FIELD_NUMBER: _ClassVar[int]
    BOOLEANS_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    doubles: DoubleValues
    integers: Int64Values
    strings: StringValues
    booleans: BoolValues
    missing: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., doubles: _Optional[_Union[DoubleValues, _Mapping]] = ..., integers: _Optional[_Union[Int64Values, _Mapping]] = ..., strings: _Optional[_Union[StringValues, _Mapping]] = ..., booleans: _Optional[_Union[BoolValues, _Mapping]] = ..., missing: _Optional[_Iterable[bool]] = ...) -> None: ...

class DoubleValues(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class Int64Values(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, values: _Optional[_Iterable[int]] = ...) -> None: ...

class StringValues(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class BoolValues(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, values: _Optional[_Iterable[bool]] = ...) -> None: ...
