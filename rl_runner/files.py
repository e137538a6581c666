"""Atomic text and JSON files: a reader (another process, a resume after a kill) never sees half a file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_atomically(path: Path, text: str) -> None:
    """``text`` written to a temporary name and renamed; an OS error names the file and removes the temporary."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise OSError(error.errno, f"cannot write {path.name} ({error.strerror})", str(path)) from error


def overwrite_in_place(path: Path, text: str) -> bool:
    """``text`` written over the bytes ``path`` holds, for a disk too full for ``write_atomically``'s temporary
    copy: bytes a file already has need no new blocks (on a filesystem that does not copy on write). Not atomic,
    so only the last resort; False, with nothing written, when ``text`` is longer than the file or there is none."""
    data = text.encode()
    try:
        if len(data) > path.stat().st_size:
            return False
    except FileNotFoundError:
        return False
    with open(path, "r+b") as file:
        file.write(data)
        file.truncate()
        file.flush()
        os.fsync(file.fileno())
    return True


def write_json(path: Path, content: Any) -> None:
    """``content`` as indented JSON, written atomically."""
    write_atomically(path, json.dumps(content, indent=2) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, or {} when there is none or it cannot be read."""
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}
