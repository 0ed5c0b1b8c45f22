"""Write-ahead logging as jbd2 does it: handles join a running transaction; a transaction
commits (today: in place, no journal; with the journal issue: log, commit, checkpoint).
"""

from .transaction import BufferCache, Handle, InPlaceJournal, Transaction

__all__ = ["BufferCache", "Handle", "InPlaceJournal", "Transaction"]
