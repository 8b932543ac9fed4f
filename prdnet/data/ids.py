"""Crystal ids: one normalisation rule for every step that reads or writes them.

An id is the source's id as text, in Unicode NFC form, without surrounding whitespace.
``prepare`` stores ids in this form and ``split`` reads id lists back with the same rule, so two
ids that differ only in surrounding whitespace or Unicode form are the same crystal everywhere
(``prepare`` rejects the second as a near-duplicate instead of letting both through).
"""

from __future__ import annotations

import unicodedata
from typing import Any


def normalise_id(raw: Any) -> str:
    """The canonical form of an id: ``str(raw)``, Unicode NFC, surrounding whitespace removed."""
    return unicodedata.normalize("NFC", str(raw)).strip()


def id_problem(raw: Any) -> str | None:
    """Why ``raw`` cannot be an id (empty, or a line break or other control character inside,
    which would break the one-id-a-line split files), or ``None`` if it can."""
    normalised = normalise_id(raw)
    if not normalised:
        return "malformed id: empty"
    if any(unicodedata.category(c).startswith("C") for c in normalised):
        return f"malformed id: control character in {normalised!r}"
    return None
