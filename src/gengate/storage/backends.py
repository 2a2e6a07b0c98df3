"""Choosing the blob store from the settings: the local data dir, or an S3 bucket."""

from __future__ import annotations

from gengate.config import Settings
from gengate.storage.base import BlobStore
from gengate.storage.local import LocalBlobStore
from gengate.storage.signing import EXPIRY_BUCKET_S


def open_blob_store(settings: Settings) -> BlobStore:
    storage = settings.storage
    if storage.backend == "s3":
        # Imported here: boto3 takes a while to load, and local deployments never need it.
        from gengate.storage.s3 import S3BlobStore

        # A presigned URL must cover the longest link lifetime plus the rounding of
        # expiries up to the hour (see s3.py).
        return S3BlobStore(storage, window_s=settings.link_ttl_s + EXPIRY_BUCKET_S)
    return LocalBlobStore(settings.files_dir)
