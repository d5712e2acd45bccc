"""TFRecord files, ``tf.train.Example`` records and TensorBoard event files, without TensorFlow.

The split step writes TFRecord shards of ``tf.train.Example`` and the report step one
TensorBoard event file (the HParams column declaration). Neither needs anything else from
TensorFlow, and importing it costs seconds of CPU in every fresh process a pipeline task
starts; so both formats are written here by hand, from the standard library and
``google_crc32c`` (the C CRC-32C that google-cloud-storage already depends on).

The formats are small and fixed: a TFRecord is ``uint64`` length (little-endian), masked
CRC-32C of those 8 bytes, the data, masked CRC-32C of the data; the records are protobuf
wire format (varints and length-delimited fields). ``tests/test_tfrecord.py`` checks the
records and shards byte for byte against TensorFlow's writers, and the event files by
reading them back with TensorFlow and TensorBoard (their wall times differ from run to
run, so not byte for byte).
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

import google_crc32c

from cnnzoo.storage.local import atomic_write_bytes

_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF
#: What the first event of an event file declares (as TensorFlow's writer does).
EVENT_FILE_VERSION = "brain.Event:2"
#: ``Event.source_metadata.writer`` of the event files written here.
EVENT_WRITER = "cnnzoo.storage.tfrecord"
# Numbers the event files of one process, like TensorFlow's per-process counter.
_event_files = itertools.count()


def masked_crc32c(data: bytes) -> int:
    """CRC-32C of ``data``, masked as TFRecord stores it."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & _U32


def frame(data: bytes) -> bytes:
    """``data`` as one TFRecord: length, its masked CRC, the data, its masked CRC."""
    length = struct.pack("<Q", len(data))
    return b"".join(
        (
            length,
            struct.pack("<I", masked_crc32c(length)),
            data,
            struct.pack("<I", masked_crc32c(data)),
        )
    )


class RecordWriter:
    """Writes TFRecords to a file (uncompressed, as ``tf.io.TFRecordWriter``); a context manager.

    Args:
        path: the file, created or truncated.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self._file = open(path, "wb")  # noqa: SIM115 - closed by close() / __exit__

    def write(self, record: bytes) -> None:
        """Append one record."""
        self._file.write(frame(record))

    def close(self) -> None:
        """Flush and close the file."""
        self._file.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _varint(n: int) -> bytes:
    n &= _U64  # a negative int64 is its two's complement, ten bytes
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2): bytes, string or a message."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def example_bytes(image: bytes, label: int) -> bytes:
    """A serialized ``tf.train.Example`` with features ``image`` (bytes) and ``label`` (int64).

    The same bytes as ``Example(...).SerializeToString(deterministic=True)``: the
    ``features`` map's entries sorted by key, the int64 list packed.

    Args:
        image: the ``image`` feature's one value.
        label: the ``label`` feature's one value (an int64).

    Returns:
        The serialized Example.
    """
    # Feature{bytes_list = 1: BytesList{value = 1}}, Feature{int64_list = 3: Int64List{value = 1}}
    image_feature = _field(1, _field(1, image))
    label_feature = _field(3, _field(1, _varint(label)))
    # Features{feature = 1: map entries {key = 1, value = 2}}, sorted by key.
    features = _field(1, _field(1, b"image") + _field(2, image_feature)) + _field(
        1, _field(1, b"label") + _field(2, label_feature)
    )
    return _field(1, features)  # Example{features = 1}


def event_bytes(
    wall_time: float,
    step: int = 0,
    *,
    file_version: str | None = None,
    summary: bytes | None = None,
) -> bytes:
    """A serialized TensorBoard ``Event`` (``tensorflow/core/util/event.proto``).

    Args:
        wall_time: seconds since the epoch.
        step: the global step (omitted when 0, as proto3 does).
        file_version: set on a file's first event only (with the writer's name).
        summary: a serialized ``Summary`` proto, or None.

    Returns:
        The serialized Event.
    """
    if file_version is not None and summary is not None:
        raise ValueError("an Event holds a file_version or a summary, not both (a oneof)")
    out = b"\x09" + struct.pack("<d", wall_time)  # wall_time = 1, double
    if step:
        out += b"\x10" + _varint(step)  # step = 2, int64
    if file_version is not None:
        out += _field(3, file_version.encode())
    if summary is not None:
        out += _field(5, summary)
    if file_version is not None:
        out += _field(10, _field(1, EVENT_WRITER.encode()))  # source_metadata.writer
    return out


def event_file_name(wall_time: float | None = None) -> str:
    """An event file name as TensorFlow's summary writer forms it.

    ``events.out.tfevents.<seconds>.<host>.<pid>.<n>.v2``; ``n`` counts this process's
    files, so two written in the same second stay apart.
    """
    seconds = int(time.time() if wall_time is None else wall_time)
    return (
        f"events.out.tfevents.{seconds:010d}.{socket.gethostname()}."
        f"{os.getpid()}.{next(_event_files)}.v2"
    )


def write_event_file(logdir: str | os.PathLike, summaries: Iterable[bytes], step: int = 0) -> Path:
    """Write a new TensorBoard event file holding ``summaries`` into ``logdir``, atomically.

    Like TensorFlow's writer: a first event with the file version, then one event per
    summary. The file appears complete or not at all (temporary name, then a rename).

    Args:
        logdir: the folder (created if missing).
        summaries: serialized ``Summary`` protos.
        step: the step of every summary event.

    Returns:
        The path of the file written.
    """
    now = time.time()
    events = [event_bytes(now, file_version=EVENT_FILE_VERSION)]
    events += [event_bytes(now, step, summary=s) for s in summaries]
    path = Path(logdir) / event_file_name(now)
    # TensorBoard loads any file with "tfevents" in its name: a killed write's temporary
    # file must not have it.
    atomic_write_bytes(path, b"".join(frame(e) for e in events), temp_prefix=".cnnzoo-event.")
    return path
