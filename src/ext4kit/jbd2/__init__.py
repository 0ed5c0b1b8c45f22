"""Write-ahead logging as jbd2 does it: handles join a running transaction; a transaction
commits in place (InPlaceJournal, file systems without a journal) or through the jbd2 log
(Jbd2Journal: log, commit block, lazy checkpoint); log.py replays a log after a crash.
"""

from .transaction import BufferCache, Handle, InPlaceJournal, Transaction

__all__ = ["BufferCache", "Handle", "InPlaceJournal", "Transaction"]
