"""The file-system layer: inodes, block maps, directories, xattrs, and the os-like API."""
