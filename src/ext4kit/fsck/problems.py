"""The problem table: every finding fsck can report, in one place (like e2fsck's problem.c).

Each problem has a code (numbered by pass as e2fsck does: 0x00xxxx before pass 1,
0x01xxxx pass 1, 0x02xxxx pass 2 ...), a message template (``{name}`` fields are filled
from the finding's location), the fix it offers (the prompt) and flags:

- ``PREEN_OK``: ``-p`` fixes it without asking; otherwise ``-p`` leaves it and exits 4.
- ``NO_OK``: declining the fix does not leave the file system in error (``-n`` may exit 0).
- ``NO_FIX``: we detect it but cannot repair it: the answer is always no and the run exits 4.
- ``INFO``: a message only; nothing to fix.

Detection code calls ``ctx.ask(CODE, **location)``; the answer (from ``-n``/``-p``/``-y``)
decides whether the repair runs. Nothing else in the checker knows about the mode.
"""

from __future__ import annotations

from dataclasses import dataclass

PREEN_OK = 0x1
NO_OK = 0x2
NO_FIX = 0x4
INFO = 0x8
# the fix only rewrites a block outside the inodes, bitmaps and superblock (e2fsck's
# extent-node checksum fix): e2fsck does not count it as modifying the file system, so
# on its own it leaves the exit code 0
NOT_CHANGED = 0x10
# preen answers no without a word (e2fsck's PR_PREEN_NO | PR_PREEN_NOMSG): an optimisation
# -p leaves alone instead of stopping the run
PREEN_NO = 0x20


@dataclass(frozen=True)
class Problem:
    code: int
    name: str
    message: str
    prompt: str  # "Fix", "Clear", ... ("" for INFO)
    flags: int = 0


_P: list[Problem] = []


def _p(code: int, name: str, message: str, prompt: str = "Fix", flags: int = 0) -> int:
    _P.append(Problem(code, name, message, prompt, flags))
    return code


# --------------------------------------------------------------------- superblock, groups
SB_CORRUPT = _p(0x000001, "SB_CORRUPT", "the primary superblock is corrupt ({why}); using the backup at block {block}", "Fix", PREEN_OK | NO_OK)
SB_BACKUP_USED = _p(0x000002, "SB_BACKUP_USED", "checking with the backup superblock at block {block}", "Fix")
INODE_COUNT_WRONG = _p(0x000003, "INODE_COUNT_WRONG", "inode count in superblock is {value}, should be {want}")
GD_CSUM = _p(0x000004, "GD_CSUM", "group descriptor {group} checksum is {value:#06x}, should be {want:#06x}", "Fix", PREEN_OK | NO_OK)
BB_NOT_GROUP = _p(0x000005, "BB_NOT_GROUP", "block bitmap for group {group} is not in the group (block {block})", "Relocate")
IB_NOT_GROUP = _p(0x000006, "IB_NOT_GROUP", "inode bitmap for group {group} is not in the group (block {block})", "Relocate")
ITABLE_NOT_GROUP = _p(0x000007, "ITABLE_NOT_GROUP", "inode table for group {group} is not in the group (block {block}); WARNING: severe data loss possible", "Relocate")
GD_UNINIT_FLAGS = _p(0x000008, "GD_UNINIT_FLAGS", "group descriptor {group} has uninit flags but the file system has no group checksums", "Fix", PREEN_OK | NO_OK)
GD_ITABLE_UNUSED = _p(0x000009, "GD_ITABLE_UNUSED", "group descriptor {group} has invalid unused inodes count {value}", "Fix", PREEN_OK)
LAST_GROUP_BLOCK_UNINIT = _p(0x00000A, "LAST_GROUP_BLOCK_UNINIT", "last group {group} block bitmap is marked uninitialised", "Fix", PREEN_OK)
SB_CSUM = _p(0x00000B, "SB_CSUM", "superblock checksum does not match", "Fix", PREEN_OK)
GD_FREE_BLOCKS_BAD = _p(0x00000C, "GD_FREE_BLOCKS_BAD", "group {group} free blocks count {value} is larger than the group", "Fix", PREEN_OK)
GD_FREE_INODES_BAD = _p(0x00000D, "GD_FREE_INODES_BAD", "group {group} free inodes count {value} is larger than the group", "Fix", PREEN_OK)
SB_GEOMETRY = _p(0x00000E, "SB_GEOMETRY", "superblock geometry is corrupt: {why}", "", NO_FIX)
SB_FREE_COUNTS = _p(0x00000F, "SB_FREE_COUNTS", "superblock free {what} count {value} is larger than the total", "Fix", PREEN_OK | NO_OK)
ORPHAN_CLEAR = _p(0x000010, "ORPHAN_CLEAR", "{action} orphan inode {ino} (mode {mode:o}, size {size})", "Fix", PREEN_OK | NO_OK | NOT_CHANGED)
ORPHAN_BAD_HEAD = _p(0x000011, "ORPHAN_BAD_HEAD", "illegal orphan inode {ino} in superblock", "Clear", PREEN_OK)
ORPHAN_BAD_INODE = _p(0x000012, "ORPHAN_BAD_INODE", "illegal inode {ino} in orphan inode list", "Clear", PREEN_OK)
JOURNAL_SKIPPED = _p(0x000013, "JOURNAL_SKIPPED", "journal needs recovery: skipped (read-only check)", "", INFO | NO_OK)
JOURNAL_REPLAYED = _p(0x000014, "JOURNAL_REPLAYED", "journal replayed ({count} blocks)", "", INFO | NO_OK)
JOURNAL_BAD = _p(0x000015, "JOURNAL_BAD", "journal cannot be replayed: {why}", "Clear", 0)
JOURNAL_INODE_BAD = _p(0x000016, "JOURNAL_INODE_BAD", "superblock has an invalid journal (inode {ino}): {why}", "Clear", PREEN_OK)
JOURNAL_RECOVER_SET = _p(0x000017, "JOURNAL_RECOVER_SET", "superblock has needs_recovery set, but no journal", "Clear", PREEN_OK)
SB_EXTRA_ISIZE = _p(0x000018, "SB_EXTRA_ISIZE", "superblock s_{field}_extra_isize {value} is invalid, should be {want}", "Fix", PREEN_OK | NO_OK)
FIRST_META_BG = _p(0x000019, "FIRST_META_BG", "first_meta_bg {value} is too big (max {want})", "Fix", 0)
SB_STATE_ERRORS = _p(0x00001A, "SB_STATE_ERRORS", "file system was marked with errors", "Fix", PREEN_OK | NO_OK)
RESIZE_INODE_INVALID = _p(0x00001B, "RESIZE_INODE_INVALID", "resize inode is invalid ({why})", "Recreate", 0)
HAS_JOURNAL_CLEAR = _p(0x00001C, "HAS_JOURNAL_CLEAR", "superblock has_journal flag is clear, but a journal (inode {ino}) is present", "Clear", PREEN_OK | NO_OK)
GDT_CSUM_FEATURE = _p(0x00001D, "GDT_CSUM_FEATURE", "group {group} is not zeroed but the file system has no group checksums", "Fix", PREEN_OK)
NOT_EXT = _p(0x00001E, "NOT_EXT", "not an ext2/3/4 file system: {why}", "", NO_FIX)
JOURNAL_FROM_BACKUP = _p(0x00001F, "JOURNAL_FROM_BACKUP", "journal inode {ino} is invalid; restoring it from the superblock's backup", "Fix", PREEN_OK | NO_OK | NOT_CHANGED)
JOURNAL_V2_FIELDS = _p(0x000020, "JOURNAL_V2_FIELDS", "found invalid V2 journal superblock fields (from V1 journal)", "Clear", PREEN_OK | NO_OK)
JOURNAL_MULTIFS = _p(0x000021, "JOURNAL_MULTIFS", "journal has multiple file system users (unsupported)", "", NO_FIX)
JOURNAL_UNSUPPORTED = _p(0x000022, "JOURNAL_UNSUPPORTED", "journal superblock: {why}", "", NO_FIX)
JOURNAL_SB_CORRUPT = _p(0x000023, "JOURNAL_SB_CORRUPT", "journal superblock is corrupt ({why})", "Fix", PREEN_OK)
JOURNAL_HAS_JOURNAL = _p(0x000024, "JOURNAL_HAS_JOURNAL", "superblock has_journal flag is clear, but a journal (inode {ino}) is present", "Clear", PREEN_OK | NO_OK)
JOURNAL_RUN_ANYWAY = _p(0x000025, "JOURNAL_RUN_ANYWAY", "journal holds transactions but the file system does not need recovery; run the journal", "Run", PREEN_OK)
JOURNAL_BACKUP = _p(0x000026, "JOURNAL_BACKUP", "backing up journal inode block information", "Fix", PREEN_OK | NO_OK | NOT_CHANGED)
HURD_FILETYPE = _p(0x000027, "HURD_FILETYPE", "the Hurd does not support the filetype feature", "Clear", PREEN_OK | NO_OK)
UNSUPPORTED_FEATURES = _p(0x000028, "UNSUPPORTED_FEATURES", "file system has unsupported feature(s): {names}; cannot check it", "", NO_FIX)
PREEN_HALT = _p(0x0000C1, "PREEN_HALT", "UNEXPECTED INCONSISTENCY; RUN fsck MANUALLY (i.e., without -a or -p options)", "", NO_FIX)
FIRST_META_BG_TOO_BIG = _p(0x0000C2, "FIRST_META_BG_TOO_BIG", "first_meta_bg is too big ({value}, max value {want})", "Clear", NO_OK)
DISABLE_RESIZE_INODE = _p(0x0000C3, "DISABLE_RESIZE_INODE", "resize_inode and meta_bg features are enabled; those features are not compatible, resize inode should be disabled", "Fix")
NONZERO_RESERVED_GDT_BLOCKS = _p(0x0000C4, "NONZERO_RESERVED_GDT_BLOCKS", "resize_inode not enabled, but s_reserved_gdt_blocks is {value}", "Fix")
FS_NOT_CLEAN = _p(0x0000C5, "FS_NOT_CLEAN", "file system was not cleanly unmounted; marking it valid", "Fix", PREEN_OK | NO_OK)

# --------------------------------------------------------------------- pass 1: inodes
ROOT_NOT_DIR = _p(0x010001, "ROOT_NOT_DIR", "root inode is not a directory", "Clear")
ROOT_DTIME = _p(0x010002, "ROOT_DTIME", "root inode has dtime set", "Fix", PREEN_OK)
RESERVED_BAD_MODE = _p(0x010003, "RESERVED_BAD_MODE", "reserved inode {ino} has bad mode {mode:o}", "Clear", PREEN_OK)
ZERO_DTIME = _p(0x010004, "ZERO_DTIME", "deleted inode {ino} has zero dtime", "Fix", PREEN_OK)
SET_DTIME = _p(0x010005, "SET_DTIME", "inode {ino} is in use, but has dtime set", "Fix", PREEN_OK)
ZERO_LENGTH_DIR = _p(0x010006, "ZERO_LENGTH_DIR", "inode {ino} is a zero-length directory", "Clear", PREEN_OK)
BAD_I_SIZE = _p(0x010007, "BAD_I_SIZE", "inode {ino}, i_size is {value}, should be {want}", "Fix", PREEN_OK)
BAD_I_BLOCKS = _p(0x010008, "BAD_I_BLOCKS", "inode {ino}, i_blocks is {value}, should be {want}", "Fix", PREEN_OK)
ILLEGAL_BLOCK = _p(0x010009, "ILLEGAL_BLOCK", "illegal block #{lblk} ({block}) in inode {ino}", "Clear")
BLOCK_OVERLAPS_METADATA = _p(0x01000A, "BLOCK_OVERLAPS_METADATA", "block #{lblk} ({block}) overlaps file system metadata in inode {ino}", "Clear")
TOO_MANY_BAD_BLOCKS = _p(0x01000B, "TOO_MANY_BAD_BLOCKS", "too many illegal blocks in inode {ino}", "Clear inode")
INODE_CSUM = _p(0x01000C, "INODE_CSUM", "inode {ino} passes checks, but checksum does not match inode", "Fix", PREEN_OK)
EXTENT_FEATURE = _p(0x01000D, "EXTENT_FEATURE", "inode {ino} is in extent format, but the extent feature is not set", "Fix")
EXTENT_HEADER = _p(0x01000E, "EXTENT_HEADER", "inode {ino} has an invalid extent node (block {block}, depth {depth}): {why}", "Clear")
EXTENT_BAD_START = _p(0x01000F, "EXTENT_BAD_START", "inode {ino} has an invalid extent (logical {lblk}, physical {block}, len {len})", "Clear")
EXTENT_ENDS_BEYOND = _p(0x010010, "EXTENT_ENDS_BEYOND", "inode {ino} extent (logical {lblk}, physical {block}, len {len}) ends beyond the file system", "Clear")
EXTENT_ORDER = _p(0x010011, "EXTENT_ORDER", "inode {ino} has out of order extents (logical {lblk}, physical {block}, len {len})", "Clear")
EXTENT_CSUM = _p(0x010012, "EXTENT_CSUM", "inode {ino} extent block {block} passes checks, but checksum does not match", "Fix", PREEN_OK | NOT_CHANGED)
EXTENT_IDX_START = _p(0x010013, "EXTENT_IDX_START", "inode {ino} extent index node starts at {value}, should be {want}", "Fix", PREEN_OK)
EXTENT_END_OOB = _p(0x010014, "EXTENT_END_OOB", "inode {ino} extent at logical {lblk} is beyond its parent's range", "Clear", PREEN_OK)
EXTENT_ZERO_LEN = _p(0x010015, "EXTENT_ZERO_LEN", "inode {ino} has a zero-length extent (physical {block})", "Clear")
EXTENT_TOO_DEEP = _p(0x010016, "EXTENT_TOO_DEEP", "inode {ino} extent tree could be more shallow ({value}; could be <= {want})", "Fix", PREEN_OK | NO_OK)
# pass 1E optimisations (e2fsck: PR_NO_OK | PR_PREEN_NO | PR_NOT_A_FIX): never an error
EXTENT_CAN_COLLAPSE = _p(0x01E001, "EXTENT_CAN_COLLAPSE", "inode {ino} extent tree (at level {level}) could be shorter", "Optimize", NO_OK | NOT_CHANGED | PREEN_NO)
EXTENT_CAN_NARROW = _p(0x01E002, "EXTENT_CAN_NARROW", "inode {ino} extent tree (at level {level}) could be narrower", "Optimize", NO_OK | NOT_CHANGED | PREEN_NO)
EXTENTS_FL_MISSING = _p(0x010017, "EXTENTS_FL_MISSING", "inode {ino} is missing EXTENTS_FL, but is in extent format", "Fix", PREEN_OK)
FAST_SYMLINK_EXTENT = _p(0x010018, "FAST_SYMLINK_EXTENT", "fast symlink {ino} has EXTENTS_FL set", "Clear")
DUP_BLOCKS = _p(0x010019, "DUP_BLOCKS", "inode {ino} has {count} multiply-claimed block(s), shared with {shared}", "Clone")
DUP_METADATA = _p(0x01001A, "DUP_METADATA", "inode {ino} claims {count} block(s) of file system metadata", "Clear")
EA_BLOCK_BAD = _p(0x01001B, "EA_BLOCK_BAD", "inode {ino} has a bad extended attribute block {block}: {why}", "Clear")
EA_REFCOUNT = _p(0x01001C, "EA_REFCOUNT", "extended attribute block {block} has reference count {value}, should be {want}", "Fix")
EA_CSUM = _p(0x01001D, "EA_CSUM", "extended attribute block {block} passes checks, but checksum does not match", "Fix", PREEN_OK)
FILE_ACL_BAD = _p(0x01001E, "FILE_ACL_BAD", "i_file_acl for inode {ino} is {value}, should be zero", "Clear")
BAD_MODE = _p(0x01001F, "BAD_MODE", "inode {ino} has invalid mode ({mode:o})", "Clear")
BAD_DEVICE = _p(0x010020, "BAD_DEVICE", "inode {ino} is an illegal {what}", "Clear")
BAD_SYMLINK = _p(0x010021, "BAD_SYMLINK", "symlink inode {ino} is invalid ({why})", "Clear")
INLINE_FEATURE = _p(0x010022, "INLINE_FEATURE", "inode {ino} has inline data, but the inline_data feature is not set", "Clear")
INLINE_BAD = _p(0x010023, "INLINE_BAD", "inode {ino} has corrupt inline data: {why}", "Clear")
EXTRA_ISIZE = _p(0x010024, "EXTRA_ISIZE", "inode {ino} has an invalid i_extra_isize ({value})", "Fix", PREEN_OK)
HTREE_NO_FEATURE = _p(0x010025, "HTREE_NO_FEATURE", "inode {ino} has INDEX_FL set, but is not a directory or dir_index is off", "Clear HTree index", PREEN_OK)
IMAGIC = _p(0x010026, "IMAGIC", "inode {ino} has imagic flag set", "Clear")
COMPR_SET = _p(0x010027, "COMPR_SET", "inode {ino} has the compression flag set", "Clear")
BLOCKS_HI = _p(0x010028, "BLOCKS_HI", "i_blocks_hi for inode {ino} is {value}, should be zero", "Clear")
DIR_TOO_BIG = _p(0x010029, "DIR_TOO_BIG", "directory inode {ino} is too big", "Truncate")
INODE_BAD_FIELDS = _p(0x01002A, "INODE_BAD_FIELDS", "inode {ino} seems to contain garbage", "Clear")
BAD_BLOCKS_INODE = _p(0x01002B, "BAD_BLOCKS_INODE", "bad blocks inode {ino} is invalid: {why}", "Clear", PREEN_OK)
JOURNAL_BLOCKS_BAD = _p(0x01002C, "JOURNAL_BLOCKS_BAD", "journal inode {ino} has invalid blocks", "Clear")
INODE_IN_UNINIT = _p(0x01002D, "INODE_IN_UNINIT", "inode {ino} is in use, but group {group} is marked INODE_UNINIT or unused", "Fix", PREEN_OK)
UNINIT_EXT_PAST_EOF = _p(0x01002E, "UNINIT_EXT_PAST_EOF", "inode {ino} has extents past EOF", "", INFO | NO_OK)
SPECIAL_HAS_BLOCKS = _p(0x01002F, "SPECIAL_HAS_BLOCKS", "special inode {ino} ({what}) has blocks", "Clear")
EA_INODE_BAD = _p(0x010030, "EA_INODE_BAD", "inode {ino} extended attribute is corrupt: {why}", "Clear")
INLINE_NO_EA = _p(0x010031, "INLINE_NO_EA", "inode {ino} has INLINE_DATA_FL flag but extended attribute not found", "Truncate")
EXTENT_COLLISION = _p(0x010032, "EXTENT_COLLISION", "inode {ino} has a duplicate extent mapping (logical block {lblk}, invalid physical block {block}, len {len})", "Clear")
# group tables in conflict / relocated (p0_tables.py; e2fsck's mark_table_blocks, new_table_block)
BB_CONFLICT = _p(0x0100C1, "BB_CONFLICT", "group {group}'s block bitmap at {block} conflicts with some other fs block", "Relocate")
IB_CONFLICT = _p(0x0100C2, "IB_CONFLICT", "group {group}'s inode bitmap at {block} conflicts with some other fs block", "Relocate")
ITABLE_CONFLICT = _p(0x0100C3, "ITABLE_CONFLICT", "group {group}'s inode table at {block} conflicts with some other fs block", "Relocate")
RELOC_FROM_TO = _p(0x0100C4, "RELOC_FROM_TO", "relocating group {group}'s {what} from {block} to {new}", "Relocate", PREEN_OK | NO_OK)
RELOC_TO = _p(0x0100C5, "RELOC_TO", "relocating group {group}'s {what} to {new}", "Relocate", PREEN_OK | NO_OK)
RELOC_NO_SPACE = _p(0x0100C6, "RELOC_NO_SPACE", "could not allocate {count} block(s) for group {group}'s {what}: no space", "", NO_FIX)
TREAT_AS_DIRECTORY = _p(0x0101A0, "TREAT_AS_DIRECTORY", "inode {ino} is a {what} but it looks like it is really a directory", "Fix")
ATTR_VALUE_EA_INODE = _p(0x0101A1, "ATTR_VALUE_EA_INODE", "inode {ino} has illegal extended attribute value inode {value}", "Clear")
ATTR_HASH = _p(0x0101A2, "ATTR_HASH", "extended attribute in inode {ino} has a hash ({value}) which is invalid", "Clear")
ATTR_SET_EA_INODE_FL = _p(0x0101A3, "ATTR_SET_EA_INODE_FL", "EA inode {value} for parent inode {ino} missing EA_INODE flag", "Fix", PREEN_OK)
ATTR_NO_EA_INODE_FL = _p(0x0101A4, "ATTR_NO_EA_INODE_FL", "inode {ino} has invalid extended attribute. EA inode {value} missing EA_INODE flag", "Clear")
DUP_DELETE = _p(0x0101A5, "DUP_DELETE", "inode {ino}: multiply-claimed blocks were not cloned ({why})", "Delete file")
DUP_DEALT = _p(0x0101A6, "DUP_DEALT", "inode {ino}: multiply-claimed blocks already reassigned or cloned", "", INFO | NO_OK)
TOOBIG_BLOCK = _p(0x0101A7, "TOOBIG_BLOCK", "block #{lblk} ({block}) causes {what} inode {ino} to be too big", "Clear")
BB_ILLEGAL_BLOCK = _p(0x0101A8, "BB_ILLEGAL_BLOCK", "illegal block #{lblk} ({block}) in bad block inode", "Clear", PREEN_OK)
BB_PRIMARY = _p(0x0101A9, "BB_PRIMARY", "the {what} ({block}) is on the bad block list; if the block is really bad, the file system cannot be fixed", "Clear")
BB_BACKUP = _p(0x0101AA, "BB_BACKUP", "warning: group {group}'s {what} ({block}) is bad", "", INFO | NO_OK)
BB_TABLE = _p(0x0101AB, "BB_TABLE", "{what} for group {group} ({block}) is on the bad block list", "Relocate")
BB_METABLOCK = _p(0x0101AC, "BB_METABLOCK", "bad block inode has an indirect block ({block}) that conflicts with file system metadata", "Clear")

# --------------------------------------------------------------------- pass 2: directories
DIR_CORRUPTED = _p(0x020001, "DIR_CORRUPTED", "directory inode {ino}, block #{lblk}, offset {offset}: directory corrupted", "Salvage")
ENTRY_BAD_INODE = _p(0x020002, "ENTRY_BAD_INODE", "entry '{name}' in {dir} ({ino}) has bad inode #: {target}", "Clear")
ENTRY_UNUSED_INODE = _p(0x020003, "ENTRY_UNUSED_INODE", "entry '{name}' in {dir} ({ino}) has deleted/unused inode {target}", "Clear")
ENTRY_LINK_DOT = _p(0x020004, "ENTRY_LINK_DOT", "entry '{name}' in {dir} ({ino}) is a link to '.'", "Clear")
MISSING_DOT = _p(0x020005, "MISSING_DOT", "missing '.' in directory inode {ino}", "Fix")
MISSING_DOT_DOT = _p(0x020006, "MISSING_DOT_DOT", "missing '..' in directory inode {ino}", "Fix")
BAD_NAME = _p(0x020007, "BAD_NAME", "entry '{name}' in {dir} ({ino}) has illegal characters in its name", "Fix")
NULL_NAME = _p(0x020008, "NULL_NAME", "entry in {dir} ({ino}) has a zero-length name", "Clear")
ENTRY_LINK_ROOT = _p(0x020009, "ENTRY_LINK_ROOT", "entry '{name}' in {dir} ({ino}) is a link to the root inode", "Clear")
ENTRY_LINK_DIR = _p(0x02000A, "ENTRY_LINK_DIR", "entry '{name}' in {dir} ({ino}) is a link to directory {target} already linked from {parent}", "Clear")
BAD_FILETYPE = _p(0x02000B, "BAD_FILETYPE", "entry '{name}' in {dir} ({ino}) has an incorrect filetype (was {value}, should be {want})", "Fix", PREEN_OK)
DUP_ENTRY = _p(0x02000C, "DUP_ENTRY", "duplicate entry '{name}' found in {dir} ({ino})", "Clear")
DIR_CSUM = _p(0x02000D, "DIR_CSUM", "directory inode {ino}, block #{lblk}: passes checks, but checksum does not match", "Fix", PREEN_OK)
DIR_NO_TAIL = _p(0x02000E, "DIR_NO_TAIL", "directory inode {ino}, block #{lblk}: no space for the checksum tail", "Fix", PREEN_OK)
HTREE_BAD = _p(0x02000F, "HTREE_BAD", "problem in htree directory inode {ino}: {why}", "Clear HTree index", PREEN_OK)
DIR_HOLE = _p(0x020010, "DIR_HOLE", "directory inode {ino} has an unallocated block #{lblk}", "Allocate")
BAD_DOT = _p(0x020011, "BAD_DOT", "'.' in directory inode {ino} is {target}, should be {ino}", "Fix")
SPLIT_DOT = _p(0x020012, "SPLIT_DOT", "directory entry for '.' in {dir} ({ino}) is big", "Split", PREEN_OK | NO_OK)
FIRST_NOT_DOT_DOT = _p(0x020013, "FIRST_NOT_DOT_DOT", "second entry '{name}' (inode {target}) in directory inode {ino} should be '..'", "Fix")
INOREF_IN_UNINIT = _p(0x020014, "INOREF_IN_UNINIT", "entry '{name}' in {dir} ({ino}) references inode {target} in group {group} where INODE_UNINIT is set or the inode is unused", "Fix", PREEN_OK)
DIR_BLOCKS_REFCOUNT = _p(0x020015, "DIR_CSUM_BAD_DX", "directory inode {ino} htree node block #{lblk} checksum does not match", "Clear HTree index", PREEN_OK)
DIR_INLINE_BAD = _p(0x020016, "DIR_INLINE_BAD", "inline directory inode {ino} is corrupt: {why}", "Clear")
FINAL_RECLEN = _p(0x020017, "FINAL_RECLEN", "directory inode {ino}, block #{lblk}: entry '{name}' rec_len {value} should be {want}", "Fix")
DIR_BAD_SIZE = _p(0x020018, "DIR_BAD_SIZE", "directory inode {ino}: block #{lblk} beyond i_size", "Fix", PREEN_OK)
ENCRYPTED_ENTRY = _p(0x020019, "ENCRYPTED_ENTRY", "encrypted entry '{name}' in {dir} ({ino}) is invalid: {why}", "Clear")
BAD_INODE_DELAYED = _p(0x02001A, "BAD_INODE", "inode {ino} ({name}) is corrupt: {why}", "Clear")
FIRST_NOT_DOT = _p(0x020020, "FIRST_NOT_DOT", "first entry '{name}' (inode {target}) in directory inode {ino} should be '.'", "Fix")
DUP_DOT = _p(0x020021, "DUP_DOT", "entry '{name}' in {dir} ({ino}) is a duplicate '.' entry", "Fix")
DUP_DOT_DOT = _p(0x020022, "DUP_DOT_DOT", "entry '{name}' in {dir} ({ino}) is a duplicate '..' entry", "Fix")
BAD_ENCRYPTED_NAME = _p(0x020023, "BAD_ENCRYPTED_NAME", "encrypted entry '{name}' in {dir} ({ino}) is too short", "Clear")
UNENCRYPTED_FILE = _p(0x020024, "UNENCRYPTED_FILE", "encrypted entry '{name}' in {dir} ({ino}) references unencrypted inode {target}", "Clear")

# --------------------------------------------------------------------- pass 3: connectivity
NO_ROOT = _p(0x030001, "NO_ROOT", "root inode not allocated", "Allocate")
UNCONNECTED_DIR = _p(0x030002, "UNCONNECTED_DIR", "unconnected directory inode {ino} (was in {parent})", "Connect to /lost+found")
NO_LPF = _p(0x030003, "NO_LPF", "/lost+found not found", "Create", PREEN_OK)
BAD_DOT_DOT = _p(0x030004, "BAD_DOT_DOT", "'..' in {dir} ({ino}) is {value}, should be {want}", "Fix")
LPF_NOT_DIR = _p(0x030005, "LPF_NOT_DIR", "/lost+found is not a directory (ino={ino})", "Unlink")
NO_SPACE_LPF = _p(0x030006, "NO_SPACE_LPF", "no room in /lost+found for inode {ino}", "", NO_FIX)
LOOP = _p(0x030007, "LOOP", "directory inode {ino} is part of a loop", "Connect to /lost+found")
REHASH = _p(0x030008, "REHASH", "directory {ino} needs its htree index rebuilt", "Fix", PREEN_OK | NO_OK)
REPAIR_FAILED = _p(0x030009, "REPAIR_FAILED", "cannot repair: {why}", "", NO_FIX)
LPF_ENCRYPTED = _p(0x03000A, "LPF_ENCRYPTED", "/lost+found is encrypted (ino={ino})", "Clear")
LPF_INLINE = _p(0x03000B, "LPF_INLINE", "/lost+found has inline data (ino={ino})", "Clear")
LPF_NO_SPACE = _p(0x03000C, "LPF_NO_SPACE", "cannot allocate space for /lost+found ({why}): lost files go in the root directory instead; insufficient space to recover lost files, move data off the file system and re-run fsck", "", INFO | NO_OK)
EXPAND_LPF = _p(0x03000D, "EXPAND_LPF", "no room in lost+found directory (ino={ino})", "Expand")

# --------------------------------------------------------------------- pass 4: link counts
UNATTACHED_INODE = _p(0x040001, "UNATTACHED_INODE", "unattached inode {ino}", "Connect to /lost+found")
UNATTACHED_ZERO = _p(0x040002, "UNATTACHED_ZERO", "unattached zero-length inode {ino}", "Clear", PREEN_OK)
BAD_REF_COUNT = _p(0x040003, "BAD_REF_COUNT", "inode {ino} ref count is {value}, should be {want}", "Fix", PREEN_OK)
EA_INODE_REF = _p(0x040004, "EA_INODE_REF", "extended attribute inode {ino} ref count is {value}, should be {want}", "Fix", PREEN_OK)

# --------------------------------------------------------------------- pass 5: summaries
BLOCK_BITMAP_DIFF = _p(0x050001, "BLOCK_BITMAP_DIFF", "block bitmap differences: {diff}", "Fix", PREEN_OK)
INODE_BITMAP_DIFF = _p(0x050002, "INODE_BITMAP_DIFF", "inode bitmap differences: {diff}", "Fix", PREEN_OK)
FREE_BLOCKS_GROUP = _p(0x050003, "FREE_BLOCKS_GROUP", "free blocks count wrong for group #{group} ({value}, counted={want})", "Fix", PREEN_OK)
FREE_INODES_GROUP = _p(0x050004, "FREE_INODES_GROUP", "free inodes count wrong for group #{group} ({value}, counted={want})", "Fix", PREEN_OK)
DIRS_GROUP = _p(0x050005, "DIRS_GROUP", "directories count wrong for group #{group} ({value}, counted={want})", "Fix", PREEN_OK)
FREE_BLOCKS = _p(0x050006, "FREE_BLOCKS", "free blocks count wrong ({value}, counted={want})", "Fix", PREEN_OK | NO_OK)
FREE_INODES = _p(0x050007, "FREE_INODES", "free inodes count wrong ({value}, counted={want})", "Fix", PREEN_OK | NO_OK)
BLOCK_BITMAP_PADDING = _p(0x050008, "BLOCK_BITMAP_PADDING", "padding at end of block bitmap of group {group} is not set", "Fix", PREEN_OK)
INODE_BITMAP_PADDING = _p(0x050009, "INODE_BITMAP_PADDING", "padding at end of inode bitmap of group {group} is not set", "Fix", PREEN_OK)
BLOCK_BITMAP_CSUM = _p(0x05000A, "BLOCK_BITMAP_CSUM", "group {group} block bitmap does not match checksum", "Fix", PREEN_OK)
INODE_BITMAP_CSUM = _p(0x05000B, "INODE_BITMAP_CSUM", "group {group} inode bitmap does not match checksum", "Fix", PREEN_OK)
BLOCK_UNINIT_USED = _p(0x05000C, "BLOCK_UNINIT_USED", "group {group} is marked BLOCK_UNINIT but blocks are in use", "Fix", PREEN_OK)
INODE_UNINIT_USED = _p(0x05000D, "INODE_UNINIT_USED", "group {group} is marked INODE_UNINIT but inodes are in use", "Fix", PREEN_OK)
ITABLE_UNUSED_WRONG = _p(0x05000E, "ITABLE_UNUSED_WRONG", "group {group} unused inodes count is {value}, should be at most {want}", "Fix", PREEN_OK)

# --------------------------------------------------------------------- quota, e2fsck's PR_6_* (quota.py; 0x0501xx: after pass 5)
QUOTA_USAGE = _p(0x050101, "QUOTA_USAGE", "[QUOTA WARNING] Usage inconsistent for ID {id}:actual ({space}, {inodes}) != expected ({want_space}, {want_inodes}) (quota type {qtype})", "", INFO)
QUOTA_MISSING = _p(0x050102, "QUOTA_MISSING", "[QUOTA WARNING] Missing quota entry ID {id} (quota type {qtype})", "", INFO)
QUOTA_FILE_BAD = _p(0x050103, "QUOTA_FILE_BAD", "quota file of type {qtype} (inode {ino}) cannot be read: {why}", "", INFO)
QUOTA_UPDATE = _p(0x050104, "QUOTA_UPDATE", "update quota info for quota type {qtype} ({name})", "Update", PREEN_OK)

TABLE: dict[int, Problem] = {p.code: p for p in _P}
BY_NAME: dict[str, Problem] = {p.name: p for p in _P}
assert len(TABLE) == len(_P) and len(BY_NAME) == len(_P), "duplicate problem code or name"


def render(code: int, loc: dict) -> str:
    """The problem's message with its location filled in (missing fields shown as ?)."""
    p = TABLE[code]

    class _Loc(dict):
        def __missing__(self, key: str) -> str:
            return "?"

    try:
        return p.message.format_map(_Loc(loc))
    except (ValueError, TypeError):
        return p.message + " " + ", ".join(f"{k}={v}" for k, v in loc.items())
