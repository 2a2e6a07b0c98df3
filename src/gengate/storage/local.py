"""Files in a local folder (the data dir), written atomically off the event loop.
gengate serves them itself at `/v1/files/{key}` behind HMAC-signed links."""

from __future__ import annotations

import os
import re
from pathlib import Path

import anyio.to_thread

#: Files up to this size are written on the event loop (a page-cache copy takes
#: microseconds); bigger ones in a thread.
INLINE_WRITE_BYTES = 64 * 1024
_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")


def is_safe_key(key: str) -> bool:
    """Keys are relative paths of plain names: no `..`, no absolute paths."""
    return bool(_SAFE_KEY.match(key)) and ".." not in key.split("/")


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not is_safe_key(key):
            raise ValueError(f"unsafe storage key: {key!r}")
        return self.root / key

    def local_path(self, key: str) -> Path | None:
        if not is_safe_key(key):
            return None
        path = self.root / key
        return path if path.is_file() else None

    def presigned_url(self, key: str, expires: int) -> str | None:
        return None

    def presigned_key(self, url: str) -> tuple[str, int] | None:
        return None

    async def put(
        self, key: str, data: bytes, content_type: str, *, filename: str | None = None
    ) -> None:
        if len(data) <= INLINE_WRITE_BYTES:
            # Handing a small write to a thread costs more than the write itself.
            self._write(self._path(key), data)
        else:
            await anyio.to_thread.run_sync(self._write, self._path(key), data)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.part")
        partial.write_bytes(data)
        os.replace(partial, path)

    async def read(self, key: str) -> bytes | None:
        if not is_safe_key(key):
            return None
        return await anyio.to_thread.run_sync(self._read, self.root / key)

    @staticmethod
    def _read(path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    async def delete(self, key: str) -> None:
        await anyio.to_thread.run_sync(self._unlink, self._path(key))

    @staticmethod
    def _unlink(path: Path) -> None:
        path.unlink(missing_ok=True)
