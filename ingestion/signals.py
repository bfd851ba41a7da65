"""Signals other apps may listen to. Sent explicitly by ingestion.services, never from save().

`document_changed(sender=Document, document_ids=[…], reason="…")` is sent inside the
transaction that gave a document a new version, expired, deleted or moved it, or changed its
validity; tuning marks the adapters trained on it stale in that same transaction.
"""

from django.dispatch import Signal

document_changed = Signal()
