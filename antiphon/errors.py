"""The one exception type for mistakes a user can make and fix.

The CLI prints a ``UserError`` as one line (no traceback) and exits non-zero; everything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user caused and can fix: the message names the cause and the fix."""
