"""What a directory may put in a name: no control characters (PostgreSQL refuses NUL in text,
and a tab or an escape in a username only hides something) and no lone surrogates (they cannot
be stored as UTF-8)."""

from __future__ import annotations

import unicodedata


def storable(value: str) -> bool:
    return not any(unicodedata.category(ch) in {"Cc", "Cs"} for ch in value)
