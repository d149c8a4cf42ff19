"""The points ledger: accounts, append-only entries, lots. The API other features call:
`grant`, `spend`, `LedgerWrite`, `InsufficientPoints` (see service.py)."""

from vafa.loyalty.ledger.book import IdempotencyKeyReused, InsufficientPoints
from vafa.loyalty.ledger.service import LedgerWrite, grant, spend

__all__ = ["IdempotencyKeyReused", "InsufficientPoints", "LedgerWrite", "grant", "spend"]
