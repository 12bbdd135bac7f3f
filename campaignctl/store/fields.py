"""The lead's fixed fields, spelled once: the `lead` table, audiences, `leads list` and the
import's column mapping all derive from this tuple.

Plain names with no imports, so the lean import process and the audience compiler can read them
without loading SQLAlchemy. `store.schema` checks at import that its `Lead` table has exactly
these columns (besides `id`, `attrs` and the timestamps).
"""

from __future__ import annotations

#: In the order `leads list` shows them.
LEAD_FIXED_FIELDS = ("email", "phone", "first_name", "last_name", "timezone", "status", "tags")
#: The columns that are not fields a lead is described by.
LEAD_BOOKKEEPING = ("id", "attrs", "created_at", "updated_at")
