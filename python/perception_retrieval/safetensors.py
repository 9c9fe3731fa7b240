"""Minimal reader and writer for the safetensors format (no third-party package).

Layout: 8-byte little-endian unsigned header length ``n``; ``n`` bytes of UTF-8 JSON
mapping each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}``
(offsets relative to the end of the header) plus an optional ``"__metadata__"``
object of string values; then the raw little-endian tensor bytes.

Errors name the file and the problem (``SafetensorsError``, a ``RuntimeError``).
"""

import json
import os
import struct
from typing import Dict, Optional, Tuple

import numpy as np
import torch

__all__ = ["SafetensorsError", "load_file", "save_file", "read_header", "looks_like_safetensors"]

# safetensors dtype name -> (torch dtype, bytes per element)
_DTYPES = {
    "F64": (torch.float64, 8),
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "I64": (torch.int64, 8),
    "I32": (torch.int32, 4),
    "I16": (torch.int16, 2),
    "I8": (torch.int8, 1),
    "U8": (torch.uint8, 1),
    "BOOL": (torch.bool, 1),
}
_NAMES = {dtype: name for name, (dtype, _) in _DTYPES.items()}
# How the bytes are moved through numpy: bfloat16 has no numpy type, int16 has its size.
_NUMPY_VIEW = {torch.bfloat16: (torch.int16, np.int16)}

_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsError(RuntimeError):
    """A file that is not valid safetensors (truncated, bad header, unknown dtype)."""


def looks_like_safetensors(prefix: bytes, file_size: int) -> bool:
    """Whether the first bytes of a file look like a safetensors header."""
    if len(prefix) < 9:
        return False
    (length,) = struct.unpack("<Q", prefix[:8])
    return 2 <= length <= min(file_size - 8, _MAX_HEADER) and prefix[8:9] == b"{"


def read_header(path) -> Tuple[Dict[str, dict], Dict[str, str], int]:
    """(tensor entries, ``__metadata__``, offset of the data section) of a safetensors file."""
    path = os.fspath(path)
    file_size = os.path.getsize(path)
    with open(path, "rb") as handle:
        raw_length = handle.read(8)
        if len(raw_length) < 8:
            raise SafetensorsError(f"{path}: file is {file_size} bytes, too short for a safetensors header")
        (length,) = struct.unpack("<Q", raw_length)
        if length > min(file_size - 8, _MAX_HEADER):
            raise SafetensorsError(
                f"{path}: header length {length} exceeds the file ({file_size} bytes); "
                "the file is truncated or not safetensors"
            )
        raw_header = handle.read(length)
    try:
        header = json.loads(raw_header.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SafetensorsError(f"{path}: header is not valid JSON ({error})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header must be a JSON object, got {type(header).__name__}")
    metadata = header.pop("__metadata__", None) or {}
    data_start = 8 + length
    data_size = file_size - data_start
    for name, entry in header.items():
        if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
            raise SafetensorsError(f"{path}: entry {name!r} lacks dtype/shape/data_offsets")
        if entry["dtype"] not in _DTYPES:
            raise SafetensorsError(
                f"{path}: tensor {name!r} has dtype {entry['dtype']!r}; supported: {', '.join(_DTYPES)}"
            )
        begin, end = entry["data_offsets"]
        count = 1
        for dim in entry["shape"]:
            count *= int(dim)
        expected = count * _DTYPES[entry["dtype"]][1]
        if not 0 <= begin <= end or end - begin != expected:
            raise SafetensorsError(
                f"{path}: tensor {name!r} offsets {[begin, end]} do not match shape {entry['shape']} "
                f"({entry['dtype']}, {expected} bytes)"
            )
        if end > data_size:
            raise SafetensorsError(
                f"{path}: tensor {name!r} ends at byte {data_start + end} but the file has {file_size} bytes; "
                "the file is truncated (download it again)"
            )
    return header, metadata, data_start


def load_file(path) -> Dict[str, torch.Tensor]:
    """All tensors of a safetensors file, as CPU tensors owning their memory."""
    header, _metadata, data_start = read_header(path)
    tensors: Dict[str, torch.Tensor] = {}
    with open(os.fspath(path), "rb") as handle:
        for name, entry in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
            dtype, _size = _DTYPES[entry["dtype"]]
            begin, end = entry["data_offsets"]
            handle.seek(data_start + begin)
            data = bytearray(handle.read(end - begin))
            if len(data) != end - begin:
                raise SafetensorsError(f"{path}: could not read tensor {name!r}; the file is truncated")
            shape = [int(d) for d in entry["shape"]]
            if end == begin:
                tensors[name] = torch.empty(shape, dtype=dtype)
                continue
            storage_dtype = _NUMPY_VIEW.get(dtype, (dtype, None))[0]
            flat = torch.frombuffer(data, dtype=storage_dtype)
            if storage_dtype != dtype:
                flat = flat.view(dtype)
            tensors[name] = flat.reshape(shape)
    return tensors


def save_file(tensors: Dict[str, torch.Tensor], path, metadata: Optional[Dict[str, str]] = None) -> None:
    """Write ``tensors`` (name -> CPU tensor) to ``path`` in safetensors format."""
    header: Dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        if tensor.dtype not in _NAMES:
            raise ValueError(f"tensor {name!r} has dtype {tensor.dtype}, which safetensors does not store")
        view_dtype, numpy_dtype = _NUMPY_VIEW.get(tensor.dtype, (None, None))
        array = tensor.view(view_dtype).numpy() if view_dtype is not None else tensor.numpy()
        blob = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _NAMES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # data section 8-byte aligned, as the reference writer does
    with open(os.fspath(path), "wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)))
        handle.write(encoded)
        for blob in blobs:
            handle.write(blob)
