"""The jbd2 journal's on-disk format: superblock, block header, descriptor tags, commit and
revoke blocks, plus the csum_v2/v3 checksums that cover them. Every field is big-endian.

Field names follow Documentation/filesystems/ext4/journal.rst and include/linux/jbd2.h.
Pure codecs: bytes in, structures out (and back); no I/O, no recovery policy.

Checksums (csum_v2 / csum_v3, all CRC32C in the kernel's ``crc32c_le`` sense):
  superblock   crc32c(~0, 1024-byte superblock with s_checksum zeroed)
  seed         j_csum_seed = crc32c(~0, s_uuid)
  descriptor   crc32c(seed, whole block with the 4-byte tail zeroed), tail = last 4 bytes
  revoke       same rule as descriptor (tail = last 4 bytes of the block)
  commit       crc32c(seed, whole block with h_chksum[0] zeroed), stored in h_chksum[0]
  data tag     crc32c(crc32c(seed, be32 sequence), block data); v3 keeps 32 bits,
               v2 keeps the low 16 bits
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..errors import CorruptError
from .csum import crc32c_raw

JBD2_MAGIC = 0xC03B3998
SUPERBLOCK_SIZE = 1024
HEADER_SIZE = 12
UUID_SIZE = 16
USERS_MAX = 48
DEFAULT_FAST_COMMIT_BLOCKS = 256  # used when fast_commit is on and s_num_fc_blks == 0

# --- block types (h_blocktype) ---------------------------------------------------------
BLOCKTYPE_DESCRIPTOR = 1
BLOCKTYPE_COMMIT = 2
BLOCKTYPE_SUPERBLOCK_V1 = 3
BLOCKTYPE_SUPERBLOCK_V2 = 4
BLOCKTYPE_REVOKE = 5
BLOCKTYPE_FAST_COMMIT = 6
BLOCKTYPE_NAMES = {
    BLOCKTYPE_DESCRIPTOR: "descriptor",
    BLOCKTYPE_COMMIT: "commit",
    BLOCKTYPE_SUPERBLOCK_V1: "superblock v1",
    BLOCKTYPE_SUPERBLOCK_V2: "superblock v2",
    BLOCKTYPE_REVOKE: "revoke",
    BLOCKTYPE_FAST_COMMIT: "fast commit",
}

# --- features ---------------------------------------------------------------------------
FEATURE_COMPAT_CHECKSUM = 0x1
FEATURE_INCOMPAT_REVOKE = 0x1
FEATURE_INCOMPAT_64BIT = 0x2
FEATURE_INCOMPAT_ASYNC_COMMIT = 0x4
FEATURE_INCOMPAT_CSUM_V2 = 0x8
FEATURE_INCOMPAT_CSUM_V3 = 0x10
FEATURE_INCOMPAT_FAST_COMMIT = 0x20

COMPAT_NAMES = {FEATURE_COMPAT_CHECKSUM: "checksum"}
INCOMPAT_NAMES = {
    FEATURE_INCOMPAT_REVOKE: "revoke",
    FEATURE_INCOMPAT_64BIT: "64bit",
    FEATURE_INCOMPAT_ASYNC_COMMIT: "async_commit",
    FEATURE_INCOMPAT_CSUM_V2: "csum_v2",
    FEATURE_INCOMPAT_CSUM_V3: "csum_v3",
    FEATURE_INCOMPAT_FAST_COMMIT: "fast_commit",
}
RO_COMPAT_NAMES: dict[int, str] = {}

# --- checksum types (s_checksum_type, h_chksum_type) ------------------------------------
CHECKSUM_CRC32 = 1
CHECKSUM_MD5 = 2
CHECKSUM_SHA1 = 3
CHECKSUM_CRC32C = 4
CHECKSUM_TYPE_NAMES = {1: "crc32", 2: "md5", 3: "sha1", 4: "crc32c"}
CRC32_CHKSUM_SIZE = 4
CHECKSUM_WORDS = 8  # h_chksum[] holds 32 bytes

# --- descriptor tag flags ---------------------------------------------------------------
FLAG_ESCAPE = 0x1  # data block's first 4 bytes were the magic and are stored as zeros
FLAG_SAME_UUID = 0x2  # no 16-byte UUID follows this tag
FLAG_DELETED = 0x4
FLAG_LAST_TAG = 0x8

_HEADER = struct.Struct(">III")
_BE32 = struct.Struct(">I")
_BE64 = struct.Struct(">Q")

_MASK32 = 0xFFFFFFFF


def _names(mask: int, table: dict[int, str], prefix: str) -> list[str]:
    out = []
    for bit in range(32):
        if mask & (1 << bit):
            out.append(table.get(1 << bit, f"{prefix}{bit}"))
    return out


# =======================================================================================
# Block header
# =======================================================================================
@dataclass
class JournalHeader:
    h_magic: int
    h_blocktype: int
    h_sequence: int

    @property
    def valid(self) -> bool:
        return self.h_magic == JBD2_MAGIC

    @property
    def type_name(self) -> str:
        return BLOCKTYPE_NAMES.get(self.h_blocktype, f"type {self.h_blocktype}")


def parse_header(buf: bytes | bytearray | memoryview, offset: int = 0) -> JournalHeader:
    """The 12-byte header at the start of every journal metadata block (magic not checked)."""
    if len(buf) - offset < HEADER_SIZE:
        raise CorruptError("journal block shorter than its 12-byte header")
    return JournalHeader(*_HEADER.unpack_from(buf, offset))


def pack_header(blocktype: int, sequence: int) -> bytes:
    return _HEADER.pack(JBD2_MAGIC, blocktype, sequence & _MASK32)


def is_journal_block(buf: bytes | bytearray | memoryview, blocktype: int | None = None) -> bool:
    """True when ``buf`` starts with the jbd2 magic (and the given block type, if any)."""
    if len(buf) < HEADER_SIZE:
        return False
    magic, btype, _ = _HEADER.unpack_from(buf, 0)
    return magic == JBD2_MAGIC and (blocktype is None or btype == blocktype)


# =======================================================================================
# Tag format: what the superblock's features say about tags, tails and revoke records
# =======================================================================================
@dataclass(frozen=True)
class TagFormat:
    """Sizes that depend on the journal's features (64bit, csum_v2, csum_v3)."""

    is64: bool = False
    csum_v2: bool = False
    csum_v3: bool = False

    @property
    def has_csum(self) -> bool:
        """csum_v2 or csum_v3: metadata blocks carry checksums, tags carry data checksums."""
        return self.csum_v2 or self.csum_v3

    @property
    def tag_bytes(self) -> int:
        """Bytes one tag occupies (kernel ``journal_tag_bytes``), not counting its UUID."""
        if self.csum_v3:
            return 16  # journal_block_tag3_t is always 16 bytes
        size = 12  # journal_block_tag_t: blocknr, checksum16, flags16, blocknr_high
        if self.csum_v2:
            size += 2
        return size if self.is64 else size - 4

    @property
    def tail_bytes(self) -> int:
        """Bytes reserved at the end of descriptor and revoke blocks for the checksum."""
        return 4 if self.has_csum else 0

    @property
    def revoke_record_bytes(self) -> int:
        return 8 if self.is64 else 4

    def descriptor_capacity(self, block_size: int) -> int:
        """Tags a descriptor block can hold when only the first tag carries a UUID."""
        room = block_size - HEADER_SIZE - self.tail_bytes - UUID_SIZE
        return max(0, room // self.tag_bytes)

    def revoke_capacity(self, block_size: int) -> int:
        return max(0, (block_size - 16 - self.tail_bytes) // self.revoke_record_bytes)


# =======================================================================================
# Journal superblock (v1 and v2)
# =======================================================================================
# 0x00 header, 0x0C static, 0x18 dynamic, 0x20 errno, 0x24 v2 features, 0x30 uuid,
# 0x40 users/limits, 0x50 checksum type, 0x54 fast commit blocks, 0x58 head,
# 0x5C padding[40], 0xFC checksum, 0x100 users[16*48]
_JSB = struct.Struct(">III" "III" "II" "i" "III" "16s" "IIII" "B3s" "II" "160s" "I" "768s")
assert _JSB.size == SUPERBLOCK_SIZE
JSB_CHECKSUM_OFFSET = 0xFC


@dataclass
class JournalSuperblock:
    """Decoded journal superblock. Padding is kept so parse -> pack reproduces the bytes."""

    h_blocktype: int = BLOCKTYPE_SUPERBLOCK_V2
    h_sequence: int = 0
    s_blocksize: int = 4096
    s_maxlen: int = 0
    s_first: int = 1
    s_sequence: int = 1
    s_start: int = 0
    s_errno: int = 0
    s_feature_compat: int = 0
    s_feature_incompat: int = 0
    s_feature_ro_compat: int = 0
    s_uuid: bytes = bytes(16)
    s_nr_users: int = 1
    s_dynsuper: int = 0
    s_max_transaction: int = 0
    s_max_trans_data: int = 0
    s_checksum_type: int = 0
    s_padding2: bytes = bytes(3)
    s_num_fc_blks: int = 0
    s_head: int = 0
    s_padding: bytes = bytes(160)
    s_checksum: int = 0
    s_users: bytes = bytes(16 * USERS_MAX)
    h_magic: int = JBD2_MAGIC

    # --- decoding / encoding ---------------------------------------------------------
    @classmethod
    def parse(cls, buf: bytes | bytearray | memoryview, check_magic: bool = True) -> JournalSuperblock:
        if len(buf) < SUPERBLOCK_SIZE:
            raise CorruptError(f"journal superblock truncated ({len(buf)} bytes, need 1024)")
        v = _JSB.unpack_from(buf, 0)
        (magic, btype, hseq, bsize, maxlen, first, seq, start, errno, compat, incompat,
         ro, uuid, nr_users, dynsuper, max_trans, max_data, ctype, pad2, nfc, head, pad,
         csum, users) = v
        if check_magic:
            if magic != JBD2_MAGIC:
                raise CorruptError(f"journal superblock has bad magic 0x{magic:08x}")
            if btype not in (BLOCKTYPE_SUPERBLOCK_V1, BLOCKTYPE_SUPERBLOCK_V2):
                raise CorruptError(f"journal superblock has unknown block type {btype}")
        return cls(
            h_blocktype=btype, h_sequence=hseq, s_blocksize=bsize, s_maxlen=maxlen,
            s_first=first, s_sequence=seq, s_start=start, s_errno=errno,
            s_feature_compat=compat, s_feature_incompat=incompat, s_feature_ro_compat=ro,
            s_uuid=uuid, s_nr_users=nr_users, s_dynsuper=dynsuper,
            s_max_transaction=max_trans, s_max_trans_data=max_data, s_checksum_type=ctype,
            s_padding2=pad2, s_num_fc_blks=nfc, s_head=head, s_padding=pad,
            s_checksum=csum, s_users=users, h_magic=magic,
        )

    def _pack_raw(self) -> bytearray:
        buf = bytearray(SUPERBLOCK_SIZE)
        _JSB.pack_into(
            buf, 0, self.h_magic, self.h_blocktype, self.h_sequence, self.s_blocksize,
            self.s_maxlen, self.s_first, self.s_sequence, self.s_start, self.s_errno,
            self.s_feature_compat, self.s_feature_incompat, self.s_feature_ro_compat,
            bytes(self.s_uuid), self.s_nr_users, self.s_dynsuper, self.s_max_transaction,
            self.s_max_trans_data, self.s_checksum_type, bytes(self.s_padding2),
            self.s_num_fc_blks, self.s_head, bytes(self.s_padding), self.s_checksum,
            bytes(self.s_users),
        )
        return buf

    def pack(self) -> bytes:
        """The 1024 on-disk bytes; with csum_v2/v3 the checksum is recomputed and stored."""
        buf = self._pack_raw()
        if self.has_csum_v2or3:
            self.s_checksum = superblock_checksum(buf)
            _BE32.pack_into(buf, JSB_CHECKSUM_OFFSET, self.s_checksum)
        return bytes(buf)

    # --- checksums --------------------------------------------------------------------
    def compute_checksum(self) -> int:
        return superblock_checksum(self._pack_raw())

    def checksum_ok(self) -> bool:
        """True when no checksum is kept (no csum_v2/v3) or the stored one matches."""
        if not self.has_csum_v2or3:
            return True
        return self.compute_checksum() == self.s_checksum

    @property
    def csum_seed(self) -> int:
        """j_csum_seed: the starting value of every other journal checksum."""
        return journal_csum_seed(self.s_uuid)

    # --- features ---------------------------------------------------------------------
    @property
    def is_v2(self) -> bool:
        return self.h_blocktype == BLOCKTYPE_SUPERBLOCK_V2

    def has_compat(self, mask: int) -> bool:
        return self.is_v2 and bool(self.s_feature_compat & mask)

    def has_incompat(self, mask: int) -> bool:
        return self.is_v2 and bool(self.s_feature_incompat & mask)

    def has_ro_compat(self, mask: int) -> bool:
        return self.is_v2 and bool(self.s_feature_ro_compat & mask)

    @property
    def has_csum_v2or3(self) -> bool:
        return self.has_incompat(FEATURE_INCOMPAT_CSUM_V2 | FEATURE_INCOMPAT_CSUM_V3)

    @property
    def tag_format(self) -> TagFormat:
        return TagFormat(
            is64=self.has_incompat(FEATURE_INCOMPAT_64BIT),
            csum_v2=self.has_incompat(FEATURE_INCOMPAT_CSUM_V2),
            csum_v3=self.has_incompat(FEATURE_INCOMPAT_CSUM_V3),
        )

    def feature_list(self) -> list[str]:
        """Kernel-style feature names (compat, incompat, ro_compat; each by bit)."""
        return (
            _names(self.s_feature_compat, COMPAT_NAMES, "compat_")
            + _names(self.s_feature_incompat, INCOMPAT_NAMES, "incompat_")
            + _names(self.s_feature_ro_compat, RO_COMPAT_NAMES, "ro_compat_")
        )

    # --- derived sizes ----------------------------------------------------------------
    @property
    def num_fc_blocks(self) -> int:
        """Fast-commit blocks at the end of the journal (0 without the feature)."""
        if not self.has_incompat(FEATURE_INCOMPAT_FAST_COMMIT):
            return 0
        return self.s_num_fc_blks or DEFAULT_FAST_COMMIT_BLOCKS

    @property
    def log_blocks(self) -> int:
        """Blocks usable by ordinary transactions: s_maxlen minus the fast-commit area."""
        return self.s_maxlen - self.num_fc_blocks

    @property
    def users(self) -> list[bytes]:
        """The s_nr_users UUIDs of file systems sharing this journal (at most 48)."""
        n = min(self.s_nr_users, USERS_MAX)
        return [bytes(self.s_users[i * 16 : i * 16 + 16]) for i in range(n)]


def superblock_checksum(raw: bytes | bytearray | memoryview) -> int:
    """crc32c(~0, the 1024-byte journal superblock with s_checksum read as zero)."""
    raw = bytes(raw[:SUPERBLOCK_SIZE])
    c = crc32c_raw(_MASK32, raw[:JSB_CHECKSUM_OFFSET])
    c = crc32c_raw(c, b"\0\0\0\0")
    return crc32c_raw(c, raw[JSB_CHECKSUM_OFFSET + 4 :])


def journal_csum_seed(uuid: bytes) -> int:
    """j_csum_seed = crc32c(~0, journal UUID)."""
    return crc32c_raw(_MASK32, bytes(uuid))


# =======================================================================================
# Descriptor blocks and their tags
# =======================================================================================
@dataclass
class BlockTag:
    """One descriptor tag: where the next journal data block belongs on the file system.

    ``checksum`` is 32 bits with csum_v3, 16 bits with csum_v2, else whatever is stored.
    ``uuid`` is the 16 bytes stored after the tag, or None when FLAG_SAME_UUID is set.
    """

    blocknr: int
    flags: int = 0
    checksum: int = 0
    uuid: bytes | None = None

    @property
    def escaped(self) -> bool:
        return bool(self.flags & FLAG_ESCAPE)

    @property
    def last(self) -> bool:
        return bool(self.flags & FLAG_LAST_TAG)

    @property
    def same_uuid(self) -> bool:
        return bool(self.flags & FLAG_SAME_UUID)


def parse_tag(buf: bytes | bytearray | memoryview, offset: int, fmt: TagFormat) -> BlockTag:
    """Decode the tag at ``offset`` (without its trailing UUID)."""
    if fmt.csum_v3:
        lo, flags, hi, csum = struct.unpack_from(">IIII", buf, offset)
    else:
        lo, csum, flags = struct.unpack_from(">IHH", buf, offset)
        hi = _BE32.unpack_from(buf, offset + 8)[0] if fmt.is64 else 0
    blocknr = lo | (hi << 32) if fmt.is64 else lo
    return BlockTag(blocknr, flags, csum)


def pack_tag(tag: BlockTag, fmt: TagFormat) -> bytes:
    """The tag's ``fmt.tag_bytes`` bytes (the UUID, if any, is appended by the caller)."""
    lo = tag.blocknr & _MASK32
    hi = (tag.blocknr >> 32) & _MASK32 if fmt.is64 else 0
    if not fmt.is64 and tag.blocknr >> 32:
        raise ValueError(f"block {tag.blocknr} needs the journal 64bit feature")
    if fmt.csum_v3:
        return struct.pack(">IIII", lo, tag.flags & _MASK32, hi, tag.checksum & _MASK32)
    out = struct.pack(">IHH", lo, tag.checksum & 0xFFFF, tag.flags & 0xFFFF)
    if fmt.is64:
        out += _BE32.pack(hi)
    if fmt.csum_v2:
        out += b"\0\0"
    assert len(out) == fmt.tag_bytes
    return out


def parse_descriptor_tags(block: bytes | bytearray | memoryview, fmt: TagFormat) -> list[BlockTag]:
    """Tags of a descriptor block, in order, up to LAST_TAG or the end of the usable area.

    The walk matches the kernel's recovery scan: a tag is read while it fits before the
    checksum tail; a UUID follows every tag without SAME_UUID.
    """
    limit = len(block) - fmt.tail_bytes
    tags: list[BlockTag] = []
    off = HEADER_SIZE
    tb = fmt.tag_bytes
    while off + tb <= limit:
        tag = parse_tag(block, off, fmt)
        off += tb
        if not tag.same_uuid:
            tag.uuid = bytes(block[off : off + UUID_SIZE])
            off += UUID_SIZE
        tags.append(tag)
        if tag.last:
            break
    return tags


def pack_descriptor_block(
    sequence: int,
    tags: list[BlockTag],
    fmt: TagFormat,
    block_size: int,
    csum_seed: int | None = None,
) -> bytes:
    """A full descriptor block. LAST_TAG is set on the final tag and cleared elsewhere;
    a tag whose ``uuid`` is None gets SAME_UUID; the tail checksum is set when
    ``fmt.has_csum`` (then ``csum_seed`` is required)."""
    buf = bytearray(block_size)
    buf[:HEADER_SIZE] = pack_header(BLOCKTYPE_DESCRIPTOR, sequence)
    off = HEADER_SIZE
    limit = block_size - fmt.tail_bytes
    for i, tag in enumerate(tags):
        flags = tag.flags & ~(FLAG_LAST_TAG | FLAG_SAME_UUID)
        if tag.uuid is None:
            flags |= FLAG_SAME_UUID
        if i == len(tags) - 1:
            flags |= FLAG_LAST_TAG
        raw = pack_tag(BlockTag(tag.blocknr, flags, tag.checksum), fmt)
        need = len(raw) + (0 if tag.uuid is None else UUID_SIZE)
        if off + need > limit:
            raise ValueError(f"{len(tags)} tags do not fit in one {block_size}-byte descriptor block")
        buf[off : off + len(raw)] = raw
        off += len(raw)
        if tag.uuid is not None:
            if len(tag.uuid) != UUID_SIZE:
                raise ValueError("tag UUID must be 16 bytes")
            buf[off : off + UUID_SIZE] = tag.uuid
            off += UUID_SIZE
    if fmt.has_csum:
        set_block_tail_checksum(buf, _need_seed(csum_seed))
    return bytes(buf)


def _need_seed(csum_seed: int | None) -> int:
    if csum_seed is None:
        raise ValueError("csum_seed is required when the journal has csum_v2/v3")
    return csum_seed


def block_tail_checksum(block: bytes | bytearray | memoryview, csum_seed: int) -> int:
    """Checksum for a descriptor or revoke block: crc32c(seed, block with tail zeroed)."""
    n = len(block)
    c = crc32c_raw(csum_seed, bytes(block[: n - 4]))
    return crc32c_raw(c, b"\0\0\0\0")


def stored_tail_checksum(block: bytes | bytearray | memoryview) -> int:
    return _BE32.unpack_from(block, len(block) - 4)[0]


def set_block_tail_checksum(block: bytearray, csum_seed: int) -> int:
    csum = block_tail_checksum(block, csum_seed)
    _BE32.pack_into(block, len(block) - 4, csum)
    return csum


def verify_block_tail(block: bytes | bytearray | memoryview, csum_seed: int) -> bool:
    return block_tail_checksum(block, csum_seed) == stored_tail_checksum(block)


# --- data blocks ----------------------------------------------------------------------
def block_tag_checksum(csum_seed: int, sequence: int, data: bytes | bytearray | memoryview) -> int:
    """Full 32-bit tag checksum: crc32c(crc32c(seed, be32 sequence), data block)."""
    c = crc32c_raw(csum_seed, _BE32.pack(sequence & _MASK32))
    return crc32c_raw(c, data)


def tag_checksum_for(fmt: TagFormat, csum_seed: int, sequence: int,
                     data: bytes | bytearray | memoryview) -> int:
    """The value a tag stores for ``data``: 32 bits (v3), low 16 bits (v2), 0 otherwise.

    ``data`` is the block as stored in the journal (escaped: jbd2 checksums the copy it
    writes to the log, and recovery verifies what it reads back before unescaping)."""
    if not fmt.has_csum:
        return 0
    c = block_tag_checksum(csum_seed, sequence, data)
    return c if fmt.csum_v3 else c & 0xFFFF


def verify_tag_checksum(tag: BlockTag, fmt: TagFormat, csum_seed: int, sequence: int,
                        data: bytes | bytearray | memoryview) -> bool:
    """True when the journal keeps no data checksums or ``tag.checksum`` matches ``data``
    (the block as read from the journal, still escaped)."""
    if not fmt.has_csum:
        return True
    return tag_checksum_for(fmt, csum_seed, sequence, data) == tag.checksum


_MAGIC_BYTES = _BE32.pack(JBD2_MAGIC)


def escape_block(data: bytes | bytearray | memoryview) -> tuple[bytes, bool]:
    """(bytes to store in the journal, escaped?) — a block starting with the jbd2 magic is
    stored with its first four bytes zeroed and the tag gets FLAG_ESCAPE."""
    data = bytes(data)
    if data[:4] == _MAGIC_BYTES:
        return b"\0\0\0\0" + data[4:], True
    return data, False


def unescape_block(data: bytes | bytearray | memoryview, escaped: bool) -> bytes:
    data = bytes(data)
    if escaped:
        return _MAGIC_BYTES + data[4:]
    return data


# =======================================================================================
# Commit block
# =======================================================================================
_COMMIT = struct.Struct(">III" "BB2s" "8I" "Q" "I")
assert _COMMIT.size == 0x3C
COMMIT_CHKSUM_OFFSET = 0x10


@dataclass
class CommitBlock:
    h_sequence: int
    h_chksum_type: int = 0
    h_chksum_size: int = 0
    h_chksum: list[int] = field(default_factory=lambda: [0] * CHECKSUM_WORDS)
    h_commit_sec: int = 0
    h_commit_nsec: int = 0
    h_padding: bytes = b"\0\0"

    @property
    def checksum(self) -> int:
        return self.h_chksum[0]


def parse_commit_block(block: bytes | bytearray | memoryview) -> CommitBlock:
    if len(block) < _COMMIT.size:
        raise CorruptError("commit block shorter than its header")
    v = _COMMIT.unpack_from(block, 0)
    return CommitBlock(
        h_sequence=v[2], h_chksum_type=v[3], h_chksum_size=v[4], h_padding=v[5],
        h_chksum=list(v[6:14]), h_commit_sec=v[14], h_commit_nsec=v[15],
    )


def pack_commit_block(commit: CommitBlock, block_size: int, csum_seed: int | None = None) -> bytes:
    """A full commit block. With ``csum_seed`` (csum_v2/v3 journals) h_chksum_type,
    h_chksum_size and h_chksum[0] are set the way the kernel does: type and size zero,
    h_chksum[0] = crc32c(seed, block with h_chksum[0] zeroed)."""
    chk = list(commit.h_chksum) + [0] * (CHECKSUM_WORDS - len(commit.h_chksum))
    ctype, csize = commit.h_chksum_type, commit.h_chksum_size
    if csum_seed is not None:
        ctype = csize = 0
        chk[0] = 0
    buf = bytearray(block_size)
    _COMMIT.pack_into(
        buf, 0, JBD2_MAGIC, BLOCKTYPE_COMMIT, commit.h_sequence & _MASK32, ctype, csize,
        bytes(commit.h_padding), *chk[:CHECKSUM_WORDS], commit.h_commit_sec,
        commit.h_commit_nsec,
    )
    if csum_seed is not None:
        csum = commit_block_checksum(buf, csum_seed)
        _BE32.pack_into(buf, COMMIT_CHKSUM_OFFSET, csum)
        commit.h_chksum_type, commit.h_chksum_size = 0, 0
        commit.h_chksum = [csum] + chk[1:CHECKSUM_WORDS]
    return bytes(buf)


def commit_block_checksum(block: bytes | bytearray | memoryview, csum_seed: int) -> int:
    """crc32c(seed, whole commit block with h_chksum[0] read as zero)."""
    c = crc32c_raw(csum_seed, bytes(block[:COMMIT_CHKSUM_OFFSET]))
    c = crc32c_raw(c, b"\0\0\0\0")
    return crc32c_raw(c, bytes(block[COMMIT_CHKSUM_OFFSET + 4 :]))


def verify_commit_block(block: bytes | bytearray | memoryview, csum_seed: int) -> bool:
    stored = _BE32.unpack_from(block, COMMIT_CHKSUM_OFFSET)[0]
    return commit_block_checksum(block, csum_seed) == stored


# =======================================================================================
# Revoke block
# =======================================================================================
REVOKE_HEADER_SIZE = 16


@dataclass
class RevokeBlock:
    h_sequence: int
    blocks: list[int]
    r_count: int = 0  # bytes used, header included (set by parse and pack)


def parse_revoke_block(block: bytes | bytearray | memoryview, fmt: TagFormat) -> RevokeBlock:
    """Revoked block numbers; r_count is checked against the block (as the kernel does)."""
    if len(block) < REVOKE_HEADER_SIZE:
        raise CorruptError("revoke block shorter than its header")
    _, _, seq, r_count = struct.unpack_from(">IIII", block, 0)
    if r_count < REVOKE_HEADER_SIZE or r_count > len(block) - fmt.tail_bytes:
        raise CorruptError(f"revoke block r_count {r_count} out of range")
    rec = fmt.revoke_record_bytes
    n = (r_count - REVOKE_HEADER_SIZE) // rec
    fmt_str = f">{n}{'Q' if rec == 8 else 'I'}"
    blocks = list(struct.unpack_from(fmt_str, block, REVOKE_HEADER_SIZE))
    return RevokeBlock(seq, blocks, r_count)


def pack_revoke_block(
    sequence: int,
    blocks: list[int],
    fmt: TagFormat,
    block_size: int,
    csum_seed: int | None = None,
) -> bytes:
    rec = fmt.revoke_record_bytes
    r_count = REVOKE_HEADER_SIZE + rec * len(blocks)
    if r_count > block_size - fmt.tail_bytes:
        raise ValueError(f"{len(blocks)} revoke records do not fit in one block")
    buf = bytearray(block_size)
    struct.pack_into(">IIII", buf, 0, JBD2_MAGIC, BLOCKTYPE_REVOKE, sequence & _MASK32, r_count)
    code = "Q" if rec == 8 else "I"
    for b in blocks:
        if rec == 4 and b >> 32:
            raise ValueError(f"block {b} needs the journal 64bit feature")
    struct.pack_into(f">{len(blocks)}{code}", buf, REVOKE_HEADER_SIZE, *blocks)
    if fmt.has_csum:
        set_block_tail_checksum(buf, _need_seed(csum_seed))
    return bytes(buf)
