"""A restricted unpickler for the official AttnGAN / StackGAN metadata pickles.

A pickle can run any Python callable while it loads, so a downloaded
``.pickle`` must never go through :func:`pickle.load`. :func:`load_pickle`
builds only plain containers and scalars: list, tuple, dict, set, frozenset,
str, bytes, int, float, bool and None. Every other global the stream names
raises :class:`pickle.UnpicklingError` that names the file and the class.

What the official files actually contain (checked with ``pickletools``):

* ``filenames.pickle`` (birds, coco), ``captions.pickle`` (birds),
  ``test/class_info.pickle`` (birds): only lists, dicts, str and int — no
  global at all.
* birds ``train/class_info.pickle``: a list of **numpy int64 scalars**, pickled
  by Python 2 numpy as ``numpy.core.multiarray.scalar(numpy.dtype('i8'), <8
  raw bytes>)`` plus a ``BUILD`` with the dtype's byte order.

For that last file exactly two globals are accepted, and neither reaches
numpy's own unpickling code: ``numpy.dtype`` is replaced by a small record
that only accepts a numeric type code (bool, signed/unsigned int, float) and a
byte order, and ``numpy.core.multiarray.scalar`` by a function that decodes
the raw bytes with that dtype and returns a plain Python ``int`` / ``float`` /
``bool``. Object dtypes, structured dtypes and arrays are refused. The result
therefore still contains only the plain types listed above.

Python 3 protocol-2 pickles store ``bytes`` as ``_codecs.encode(text,
"latin1")``; that global is accepted with the encoding pinned to latin-1.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
from typing import Any

import numpy as np

# Type codes a pickled numpy scalar may use: bool, signed and unsigned
# integers, floats. Everything else (objects, strings, structured) is refused.
_NUMERIC_DTYPE_KINDS = frozenset("biuf")

_PLAIN_BUILTINS = {
    "list": list,
    "tuple": tuple,
    "dict": dict,
    "set": set,
    "frozenset": frozenset,
    "str": str,
    "unicode": str,
    "bytes": bytes,
    "int": int,
    "long": int,
    "float": float,
    "bool": bool,
}


class _PickledDtype:
    """Stand-in for ``numpy.dtype`` inside a pickle: a validated type code and byte order."""

    def __init__(self, type_code: Any, align: Any = 0, copy: Any = 1, *, source: str = "?"):
        self._source = source
        if isinstance(type_code, bytes):
            type_code = type_code.decode("latin1")
        if not isinstance(type_code, str):
            raise pickle.UnpicklingError(
                f"{source}: refused a pickled numpy dtype built from {type(type_code).__name__}; "
                "only numeric type codes such as 'i8' or 'f4' are accepted."
            )
        try:
            dtype = np.dtype(type_code)
        except TypeError as error:
            raise pickle.UnpicklingError(f"{source}: unknown numpy type code {type_code!r} ({error}).") from None
        if dtype.kind not in _NUMERIC_DTYPE_KINDS or dtype.fields is not None:
            raise pickle.UnpicklingError(
                f"{source}: refused numpy dtype {type_code!r} (kind {dtype.kind!r}); "
                "only bool, integer and float scalars may be unpickled."
            )
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        # numpy's dtype state: (version, byte order, subarray, names, fields, ...).
        # Only the byte order is used; anything structured is refused.
        if not isinstance(state, tuple) or len(state) < 2:
            raise pickle.UnpicklingError(f"{self._source}: malformed numpy dtype state {state!r}.")
        byte_order = state[1]
        if isinstance(byte_order, bytes):
            byte_order = byte_order.decode("latin1")
        if byte_order not in ("<", ">", "|", "="):
            raise pickle.UnpicklingError(f"{self._source}: unknown byte order {byte_order!r} in a numpy dtype.")
        if any(part is not None for part in state[2:5]):
            raise pickle.UnpicklingError(
                f"{self._source}: refused a structured or sub-array numpy dtype; only plain scalars are accepted."
            )
        if byte_order in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(byte_order)


def _decode_numpy_scalar(source: str, dtype: Any, raw: Any = None) -> int | float | bool:
    """Stand-in for ``numpy.core.multiarray.scalar``: raw bytes → plain Python number."""
    if not isinstance(dtype, _PickledDtype):
        raise pickle.UnpicklingError(f"{source}: a numpy scalar must be built from a numeric dtype.")
    if isinstance(raw, str):
        # Python 2 byte strings arrive as latin-1 decoded text (encoding="latin1").
        raw = raw.encode("latin1")
    if not isinstance(raw, bytes) or len(raw) != dtype.dtype.itemsize:
        raise pickle.UnpicklingError(
            f"{source}: a pickled numpy {dtype.dtype} scalar needs {dtype.dtype.itemsize} raw bytes."
        )
    return np.frombuffer(raw, dtype=dtype.dtype)[0].item()


def _encode_latin1(source: str, text: Any, encoding: Any = "latin1") -> bytes:
    """Stand-in for ``_codecs.encode`` (how protocol-2 pickles store ``bytes``)."""
    if not isinstance(text, str) or str(encoding).lower().replace("-", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"{source}: refused _codecs.encode with encoding {encoding!r}.")
    return codecs.encode(text, "latin1")


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: str):
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        source = self._source
        if module in ("builtins", "__builtin__") and name in _PLAIN_BUILTINS:
            return _PLAIN_BUILTINS[name]
        if module == "numpy" and name == "dtype":
            return lambda *args: _PickledDtype(*args, source=source)
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "scalar":
            return lambda *args: _decode_numpy_scalar(source, *args)
        if module == "_codecs" and name == "encode":
            return lambda *args: _encode_latin1(source, *args)
        raise pickle.UnpicklingError(
            f"{source}: refused to load the global '{module}.{name}'. Only plain lists, tuples, dicts, "
            "sets, strings, numbers and numpy number scalars may come from a metadata pickle; "
            "this file is not an official metadata file or has been tampered with — re-download it."
        )

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(f"{self._source}: refused a persistent reference {pid!r}.")


class _PickledArray:
    """Stand-in for ``numpy.core.multiarray._reconstruct`` / ``numpy.ndarray``: a plain numeric array decoded
    from its raw bytes with a checked numeric dtype; no numpy code runs on the pickle's behalf."""

    def __init__(self, *args, source: str = "pickle"):
        self.source, self.array = source, None
        if not args or args[0] is not _PickledArray:
            raise pickle.UnpicklingError(f"{source}: refused an array of a class other than numpy.ndarray.")

    def __setstate__(self, state):  # numpy's (version, shape, dtype, is_fortran, raw bytes)
        shape, dtype, fortran, raw = state[-4:] if isinstance(state, tuple) and len(state) in (4, 5) else (None,) * 4
        if not isinstance(dtype, _PickledDtype) or not isinstance(shape, tuple):
            raise pickle.UnpicklingError(f"{self.source}: refused a numpy array that is not of plain numbers.")
        raw = raw.encode("latin1") if isinstance(raw, str) else raw  # Python 2 strings arrive decoded
        if not isinstance(raw, bytes) or len(raw) != int(np.prod(shape)) * dtype.dtype.itemsize:
            raise pickle.UnpicklingError(f"{self.source}: a numpy array's data does not fit its shape {shape}.")
        self.array = np.frombuffer(raw, dtype.dtype).reshape(shape, order="F" if fortran else "C").copy()


class _ArrayUnpickler(_RestrictedUnpickler):
    """The restricted unpickler that also builds plain numeric numpy arrays (Reed's embeddings)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct") or (
                module == "numpy" and name == "ndarray"):
            source = self._source
            if name == "ndarray":
                return _PickledArray
            return lambda *args: _PickledArray(*args, source=source)
        return super().find_class(module, name)


def _with_arrays(value: Any) -> Any:
    if isinstance(value, _PickledArray):
        return value.array
    if isinstance(value, list):
        return [_with_arrays(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_with_arrays(item) for item in value)
    if isinstance(value, dict):
        return {key: _with_arrays(item) for key, item in value.items()}
    return value


def load_pickle(path: str | os.PathLike, numeric_arrays: bool = False) -> Any:
    """Load a (Python 2 or 3) metadata pickle, building only plain Python values (and, with
    ``numeric_arrays``, numpy arrays of plain numbers, decoded from their bytes: StackGAN's
    ``char-CNN-RNN-embeddings.pickle``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        pickle.UnpicklingError: the file names a class outside the allowed set,
            or is truncated / not a pickle.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Pickle file not found: {path}")
    with open(path, "rb") as file:
        try:
            if numeric_arrays:
                return _with_arrays(_ArrayUnpickler(file, path).load())
            return _RestrictedUnpickler(file, path).load()
        except pickle.UnpicklingError as error:
            if path in str(error):  # our own refusal, already names the file
                raise
            raise pickle.UnpicklingError(
                f"{path}: not a readable pickle ({error}); the file is probably truncated or corrupt — "
                "re-download it."
            ) from error
        except (EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError, UnicodeError) as error:
            raise pickle.UnpicklingError(
                f"{path}: not a readable pickle ({type(error).__name__}: {error}); the file is probably "
                "truncated or corrupt — re-download it."
            ) from error
