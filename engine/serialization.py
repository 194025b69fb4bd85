"""engine.save / engine.load on safetensors: tensors and plain data, never pickle.

* A flat ``dict[str, Tensor]`` (a state_dict) is written with its keys verbatim, so
  ``safetensors.torch.load_file`` + ``torch_module.load_state_dict`` reads it directly.
* Anything else built from dicts, lists, tuples, tensors, numpy arrays, numbers,
  strings, bools and None (an optimizer state_dict, a checkpoint bundle) is written as
  its tensors under flattened keys plus a JSON description of the structure in the
  header entry ``__trainyard__``.

Deviation from torch.save: ``metadata`` (str -> str) adds entries to the safetensors
header, read back by ``load_metadata`` (the platform keeps spec/epoch/step there).
Loading defaults to the CPU (torch restores the saved device); pass ``map_location``.
A malformed, truncated or hostile file raises ``SerializationError`` (a ValueError).
"""
from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from collections.abc import Callable
from typing import IO, Any

import numpy as np

from engine import backend
from engine.tensor import Tensor

__all__ = ["SerializationError", "load", "load_metadata", "save"]

FileLike = str | os.PathLike | IO[bytes]
_STRUCT_KEY = "__trainyard__"
_FORMAT_VERSION = 1
_MAX_DEPTH = 200


class SerializationError(ValueError):
    """The bytes are not an engine/safetensors file we can read safely."""


# ---------------------------------------------------------------------------- save
def _is_flat_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())


def _contiguous(a: np.ndarray) -> np.ndarray:
    # np.ascontiguousarray would turn a 0-d array (e.g. Adam's step) into shape (1,)
    return np.require(a, requirements="C")


def _host(t: Any) -> np.ndarray:
    return _contiguous(backend.to_numpy(getattr(t, "_data", t)))


class _Encoder:
    """Walks a nested object: tensors go to ``self.tensors`` under path keys, the rest to JSON."""

    def __init__(self) -> None:
        self.tensors: dict[str, np.ndarray] = {}

    def _key(self, path: list) -> str:
        base = ".".join(str(p) for p in path) or "tensor"
        key, n = base, 1
        while key in self.tensors or key == _STRUCT_KEY:
            key = f"{base}#{n}"
            n += 1
        return key

    def encode(self, obj: Any, path: list, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise ValueError("object nests too deeply to save")
        if isinstance(obj, Tensor):
            key = self._key(path)
            self.tensors[key] = _host(obj)
            node = {"T": key}
            if obj.requires_grad:
                node["rg"] = True
            return node
        if isinstance(obj, np.ndarray):
            key = self._key(path)
            self.tensors[key] = _contiguous(obj)
            return {"N": key}
        if isinstance(obj, np.generic):
            obj = obj.item()
        if obj is None or isinstance(obj, (bool, int, str)):
            return obj
        if isinstance(obj, float):
            return obj if math.isfinite(obj) else {"F": repr(obj)}
        if isinstance(obj, dict):
            return {"D": [[self.encode(k, path + ["k"], depth + 1), self.encode(v, path + [k], depth + 1)]
                          for k, v in obj.items()]}
        if isinstance(obj, tuple):
            return {"U": [self.encode(v, path + [i], depth + 1) for i, v in enumerate(obj)]}
        if isinstance(obj, list):
            return {"L": [self.encode(v, path + [i], depth + 1) for i, v in enumerate(obj)]}
        raise TypeError(f"engine.save cannot store {type(obj).__name__} (tensors, arrays, numbers, "
                        "strings, None, dicts, lists and tuples only; never pickle)")


def _serialize(tensors: dict[str, np.ndarray], metadata: dict[str, str] | None) -> bytes:
    from safetensors.numpy import save as st_save

    for k, a in tensors.items():
        if a.dtype.kind not in "biuf":
            raise TypeError(f"cannot save array {k!r} of dtype {a.dtype}")
    return st_save(tensors, metadata=metadata or None)


def save(obj: Any, f: FileLike, *, metadata: dict[str, str] | None = None) -> None:
    """Saves ``obj`` to a path or binary file object in safetensors format (see module doc).

    Args:
        obj: a state_dict, or a nest of dicts/lists/tuples of tensors and plain values.
        f: a filesystem path (written atomically) or a writable binary file object.
        metadata: extra ``str -> str`` header entries (deviation from torch.save).
    """
    meta: dict[str, str] = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError("metadata must map str to str")
            if k == _STRUCT_KEY:
                raise ValueError(f"metadata key {_STRUCT_KEY!r} is reserved")
            meta[k] = v
    if _is_flat_state_dict(obj):
        tensors = {k: _host(v) for k, v in obj.items()}
        meta.setdefault("format", "pt")
        auto = ["format"] if metadata is None or "format" not in metadata else []
        meta[_STRUCT_KEY] = json.dumps({"v": _FORMAT_VERSION, "flat": True, "auto": auto, "keys": list(obj)},
                                       separators=(",", ":"))
    else:
        enc = _Encoder()
        structure = enc.encode(obj, [])
        tensors = enc.tensors
        meta[_STRUCT_KEY] = json.dumps({"v": _FORMAT_VERSION, "root": structure, "auto": []},
                                       separators=(",", ":"))
    data = _serialize(tensors, meta)
    if isinstance(f, (str, os.PathLike)):
        path = os.fspath(f)
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".safetensors")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    else:
        f.write(data)


# ---------------------------------------------------------------------------- load
def _read_bytes(f: FileLike) -> bytes:
    if isinstance(f, (str, os.PathLike)):
        with open(f, "rb") as fh:
            return fh.read()
    if isinstance(f, (bytes, bytearray, memoryview)):
        return bytes(f)
    data = f.read()
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError("engine.load needs a path or a binary file object")
    return bytes(data)


def _parse(data: bytes) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Tensors and header metadata; safetensors validates offsets, sizes and dtypes."""
    from safetensors.numpy import load as st_load

    try:
        tensors = st_load(data)
    except Exception as ex:  # noqa: BLE001 - SafetensorError, or a dtype numpy lacks (bf16, fp8)
        raise SerializationError(f"not a valid safetensors file: {ex}") from None
    (n,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8:8 + n])
    except ValueError as ex:
        raise SerializationError(f"bad safetensors header: {ex}") from None
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise SerializationError("bad safetensors metadata: expected a str -> str map")
    return tensors, meta


def _placer(map_location: Any) -> Callable[[np.ndarray], Any]:
    if map_location is None:
        return lambda a: a
    if callable(map_location):
        return lambda a: getattr(map_location(Tensor._wrap(a), "cpu"), "_data", a)
    if isinstance(map_location, dict):
        dev = map_location.get("cpu", "cpu")
    else:
        dev = map_location
    device = backend.Device(str(dev) if not isinstance(dev, (str, backend.Device)) else dev)
    return lambda a: backend.move_to(a, device)


def _to_tensor(array: np.ndarray, place: Callable[[np.ndarray], Any], requires_grad: bool = False) -> Tensor:
    from engine.dtypes import from_numpy_dtype

    try:
        target = from_numpy_dtype(array.dtype).np
    except TypeError:
        raise SerializationError(f"unsupported tensor dtype {array.dtype}") from None
    # a fresh, writable, native-byte-order array in an engine dtype (e.g. uint8 -> int64)
    array = np.array(array, dtype=target, copy=True)
    t = Tensor._wrap(place(array))
    if requires_grad and t.is_floating_point():
        t.requires_grad_(True)
    return t


class _Decoder:
    def __init__(self, tensors: dict[str, np.ndarray], place: Callable) -> None:
        self.tensors = tensors
        self.place = place

    def _array(self, key: Any) -> np.ndarray:
        if not isinstance(key, str) or key not in self.tensors:
            raise SerializationError(f"structure refers to a missing tensor {key!r}")
        return self.tensors[key]

    def decode(self, node: Any, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise SerializationError("structure nests too deeply")
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if not isinstance(node, dict) or not node:
            raise SerializationError(f"bad structure node {str(node)[:80]!r}")
        tag = next(iter(node))
        body = node[tag]
        if tag == "T":
            return _to_tensor(self._array(body), self.place, bool(node.get("rg")))
        if tag == "N":
            return np.array(self._array(body), copy=True)
        if tag == "F":
            if body not in ("nan", "inf", "-inf"):
                raise SerializationError(f"bad float {body!r}")
            return float(body)
        if tag in ("L", "U"):
            if not isinstance(body, list):
                raise SerializationError("bad list node")
            items = [self.decode(v, depth + 1) for v in body]
            return tuple(items) if tag == "U" else items
        if tag == "D":
            if not isinstance(body, list):
                raise SerializationError("bad dict node")
            out = {}
            for pair in body:
                if not isinstance(pair, list) or len(pair) != 2:
                    raise SerializationError("bad dict item")
                key = self.decode(pair[0], depth + 1)
                try:
                    hash(key)
                except TypeError:
                    raise SerializationError("unhashable dict key") from None
                out[key] = self.decode(pair[1], depth + 1)
            return out
        raise SerializationError(f"unknown structure tag {tag!r}")


def _structure(meta: dict[str, str]) -> dict | None:
    raw = meta.get(_STRUCT_KEY)
    if raw is None:
        return None
    try:
        info = json.loads(raw)
    except (ValueError, RecursionError):
        raise SerializationError("bad engine structure record") from None
    if not isinstance(info, dict) or info.get("v") != _FORMAT_VERSION:
        raise SerializationError("unsupported engine structure record version")
    return info


def load(f: FileLike, map_location: Any = None, *, weights_only: bool = True, mmap: Any = None) -> Any:
    """Loads what ``save`` wrote (or any safetensors file, as a dict of tensors).

    Args:
        f: a path, a binary file object, or bytes.
        map_location: None (CPU), a device ('cpu', 'cuda:0', engine.device), a dict
            {'cpu': device}, or a callable (tensor, 'cpu') -> tensor.
        weights_only: accepted for torch compatibility; loading never runs code.
    """
    tensors, meta = _parse(_read_bytes(f))
    place = _placer(map_location)
    info = _structure(meta)
    if info is None or info.get("flat"):
        order = info.get("keys") if info is not None else None
        if not (isinstance(order, list) and all(isinstance(k, str) for k in order)
                and sorted(order) == sorted(tensors)):
            order = list(tensors)  # a foreign file: safetensors' own order
        return {k: _to_tensor(tensors[k], place) for k in order}
    try:
        return _Decoder(tensors, place).decode(info.get("root"))
    except RecursionError:
        raise SerializationError("structure nests too deeply") from None


def load_metadata(f: FileLike) -> dict[str, str]:
    """The user metadata given to ``save`` (all header metadata for foreign files)."""
    data = _read_bytes(f)
    _, meta = _parse(data)
    info = _structure(meta)
    meta = dict(meta)
    meta.pop(_STRUCT_KEY, None)
    if info is not None:
        for k in info.get("auto", []):
            meta.pop(k, None)
    return meta


