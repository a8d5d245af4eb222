"""The one check for every name that becomes a folder name: an experiment, a branch, each part of
a branch path. A name the file system refuses (too long, a '/' or NUL in it), or one that would
garble a terminal or a log (newlines, ANSI escapes), is refused before anything is written."""
from __future__ import annotations

import re
import unicodedata

# rumpy's temporary names add at most ~30 bytes (`.<name>.<random>.creating`); 255 is the limit
# of ext4, XFS, APFS and NTFS.
MAX_BYTES = 200
# Branch names are stricter: they are typed on command lines and shown in `rumpy tree`.
BRANCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def name_problem(name: str, branch: bool = False) -> str | None:
    """Why `name` cannot be a folder name, or None."""
    if not name:
        return "expected a name, got an empty string"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:  # a command-line argument that was not valid UTF-8
        return f"expected text, got {name!r} (not valid UTF-8)"
    control = next((c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")), None)
    if control is not None:
        return f"expected a name without control characters, got {name!r} (contains {control!r})"
    if size > MAX_BYTES:
        return (f"expected a name of at most {MAX_BYTES} bytes (file systems allow 255), got "
                f"{size}")
    if name in (".", ".."):
        return (f"expected a plain folder name, got {name!r}: '.' and '..' are not allowed "
                f"(they mean a folder itself and its parent), nor names starting with '.'")
    if "/" in name or "\\" in name:
        return f"expected a plain folder name (no '/' or '\\'), got {name!r}"
    if name.startswith("."):
        return f"expected a plain folder name not starting with '.' (hidden), got {name!r}"
    if branch and not BRANCH_NAME.fullmatch(name):
        return (f"expected a branch name of letters, digits, '_', '-' and '.' that starts with a "
                f"letter or digit, got {name!r}")
    return None
