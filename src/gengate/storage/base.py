"""The blob store interface: put, read and delete files by key, and say how a file is
linked. Two backends implement it: a local folder (`local.py`) and an S3-compatible
bucket (`s3.py`); `backends.py` picks one from the settings.

Keys are relative paths of plain names (`<job hex>/<attempt>-<n>.png`,
`uploads/<upload hex>.jpg`). A backend never decides who may read a file: links are
signed by `signing.LinkSigner` (local files) or presigned by the backend itself (S3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class BlobStore(Protocol):
    async def put(
        self, key: str, data: bytes, content_type: str, *, filename: str | None = None
    ) -> None:
        """Store `data` under `key`. `filename` is the name a download is saved under,
        where the backend serves files itself (S3 keeps it as Content-Disposition)."""
        ...

    async def read(self, key: str) -> bytes | None:
        """The file's bytes, or None when there is no such file."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the file; removing a file that does not exist is not an error."""
        ...

    def local_path(self, key: str) -> Path | None:
        """The file on this machine holding `key`, when the backend is a local folder."""
        ...

    def presigned_url(self, key: str, expires: int) -> str | None:
        """A URL the backend serves itself until `expires` (unix seconds), or None when
        gengate serves the file (the local folder, behind `/v1/files` links)."""
        ...

    def presigned_key(self, url: str) -> tuple[str, int] | None:
        """The key and expiry of a URL that `presigned_url` made, or None when `url` is
        not one of this store's links (or has been tampered with)."""
        ...
