"""Pure codecs for ext4 and jbd2 on-disk structures: bytes <-> objects, plus checksums.

Nothing here does I/O or imports other ext4kit layers.
"""
