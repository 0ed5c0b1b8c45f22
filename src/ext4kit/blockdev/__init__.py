"""Block devices: the only layer that touches the image file.

Interface: ``read(offset, length)``, ``write(offset, data)``, ``flush()`` (barrier),
``size``, ``sector_size``.
"""

from .base import BlockDevice
from .file import FileDevice
from .memory import MemoryDevice
from .recording import RecordingDevice, Trace, TraceOp

__all__ = ["BlockDevice", "FileDevice", "MemoryDevice", "RecordingDevice", "Trace", "TraceOp"]
