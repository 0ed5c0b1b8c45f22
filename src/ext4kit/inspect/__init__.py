"""Read-only views of an image for people: superblock/journal summary (info), later the
journal dump (logdump) and block map (diskmap). Nothing here writes to the image."""
