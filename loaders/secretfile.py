"""Secret files (backend.env, the local app-role password, a server's password file, local.env).

One helper so that every secret file is born 0600: it is created under a temporary name in
its own folder with `O_CREAT | O_EXCL` and mode 0600, written, flushed, and renamed over the
final name. Writing first and chmod'ing after leaves a window in which another local user can
open the file (and keep the descriptor); a temporary file in the system temp folder leaves
the secret somewhere world-listable. Neither happens here.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) if missing; a folder we create is 0700."""
    if not path.exists():
        path.mkdir(parents=True, mode=DIR_MODE)
    return path


def write_secret(path: Path, text: str, *, owner: str | None = None) -> Path:
    """Atomically replace `path` with `text`, mode 0600 from the first byte. `owner` (a user
    name) hands the file to another account, e.g. the server's system user when run as root."""
    path = Path(path)
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if owner is not None:
            import shutil

            shutil.chown(tmp, owner, owner)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_secret(path: Path) -> str | None:
    """The file's text without its trailing newline, or None when it does not exist."""
    try:
        return Path(path).read_text().rstrip("\n")
    except FileNotFoundError:
        return None
