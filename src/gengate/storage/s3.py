"""Files in an S3-compatible bucket (AWS S3, MinIO, Cloudflare R2, Ceph, …) through boto3.

The bucket serves downloads itself: output links are SigV4 presigned GET URLs, which
also carry HTTP Range support, so no download passes through gengate.

Presigned URLs are made deterministic. A SigV4 signature covers its signing time
(`X-Amz-Date`), so signing "now" would give a new URL on every read of a job, and the
job's body would change under an unchanged ETag. Instead every URL that expires at
`expires` is signed as of `expires - window` with `X-Amz-Expires = window`, where
`window` is the link lifetime plus one expiry bucket: since link expiries are rounded
up to the hour, that signing time is never in the future and the URL is valid from now
until `expires`. The same key and expiry therefore always give the same URL, on every
replica, and `presigned_key` can recognise (and verify) a URL this store made by
signing it again.

boto3 is synchronous: calls that reach the bucket run in worker threads. Signing is
local arithmetic and runs inline; as a URL is a function of its key, expiry and
credentials, recent URLs are kept (botocore takes about a third of a millisecond per
signature, and clients poll the same jobs over and over).
"""

from __future__ import annotations

import functools
import hmac
from collections import OrderedDict
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, quote, unquote, urlsplit

import anyio.to_thread
import boto3
from botocore import UNSIGNED
from botocore.auth import SIGV4_TIMESTAMP, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import ClientError

from gengate.config import StorageConfig

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: SigV4 presigned URLs live at most seven days.
MAX_PRESIGN_WINDOW_S = 7 * 86_400
LINK_CACHE_SIZE = 4096
_PROBE_KEY = "gengate-probe"


class _SignedAtQueryAuth(S3SigV4QueryAuth):
    """botocore's S3 query-string signer, signing as of a given moment instead of now."""

    def __init__(
        self, credentials: ReadOnlyCredentials, region: str, window_s: int, signed_at: datetime
    ) -> None:
        super().__init__(credentials, "s3", region, expires=window_s)
        self._signed_at = signed_at.strftime(SIGV4_TIMESTAMP)

    def _modify_request_before_signing(self, request: AWSRequest) -> None:
        # add_auth stamps the current time just before this hook; every later step
        # (scope, string to sign, signing key) reads the stamp from the context.
        request.context["timestamp"] = self._signed_at
        # A documented step of botocore's signers, though its type stubs leave it out.
        super()._modify_request_before_signing(request)  # type: ignore[misc]


def content_disposition(filename: str) -> str:
    return f'inline; filename="{filename}"'


class S3BlobStore:
    def __init__(self, config: StorageConfig, *, window_s: int) -> None:
        if config.bucket is None:
            raise ValueError("storage.bucket is required for the s3 backend")
        if not 0 < window_s <= MAX_PRESIGN_WINDOW_S:
            raise ValueError(f"presigned links live at most {MAX_PRESIGN_WINDOW_S} s")
        self.bucket = config.bucket
        self.prefix = config.prefix.strip("/") + "/" if config.prefix.strip("/") else ""
        self.window_s = window_s
        secret = config.secret_access_key
        session = boto3.session.Session(
            aws_access_key_id=config.access_key_id,
            aws_secret_access_key=secret.get_secret_value() if secret else None,
            region_name=config.region,
        )
        self._client: S3Client = session.client(
            "s3",
            endpoint_url=config.endpoint_url,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": config.addressing_style},
                retries={"mode": "standard", "max_attempts": 3},
                connect_timeout=5,
                read_timeout=60,
            ),
        )
        credentials = session.get_credentials()
        if credentials is None:
            raise ValueError(
                "no S3 credentials: set storage.access_key_id and storage.secret_access_key "
                "(or the usual AWS_* variables)"
            )
        self._credentials = credentials
        self._region = self._client.meta.region_name
        # The URL of an object, without a signature, comes from botocore's own endpoint
        # rules (virtual-hosted or path style, custom endpoints); it is worked out once.
        unsigned = session.client(
            "s3",
            endpoint_url=config.endpoint_url,
            config=Config(
                signature_version=UNSIGNED, s3={"addressing_style": config.addressing_style}
            ),
        )
        probe = unsigned.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": _PROBE_KEY}
        )
        self._object_base = probe.removesuffix(_PROBE_KEY)
        self._links: OrderedDict[tuple[str, int, str | None, str | None], str] = OrderedDict()

    def _object_key(self, key: str) -> str:
        return self.prefix + key

    def local_path(self, key: str) -> None:
        return None

    # -- calls to the bucket, in threads -----------------------------------------------

    async def put(
        self, key: str, data: bytes, content_type: str, *, filename: str | None = None
    ) -> None:
        extra: dict[str, str] = {"ContentType": content_type}
        if filename is not None:
            extra["ContentDisposition"] = content_disposition(filename)
        await anyio.to_thread.run_sync(
            functools.partial(
                self._client.put_object,
                Bucket=self.bucket,
                Key=self._object_key(key),
                Body=data,
                **extra,  # type: ignore[arg-type]
            )
        )

    async def read(self, key: str) -> bytes | None:
        return await anyio.to_thread.run_sync(self._read, self._object_key(key))

    def _read(self, object_key: str) -> bytes | None:
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=object_key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        return answer["Body"].read()

    async def delete(self, key: str) -> None:
        await anyio.to_thread.run_sync(
            functools.partial(
                self._client.delete_object, Bucket=self.bucket, Key=self._object_key(key)
            )
        )

    # -- presigned links, computed locally ---------------------------------------------

    def presigned_url(self, key: str, expires: int) -> str:
        credentials = self._credentials.get_frozen_credentials()
        cache_key = (key, expires, credentials.access_key, credentials.token)
        url = self._links.get(cache_key)
        if url is None:
            url = self._sign(key, expires, credentials)
            self._links[cache_key] = url
            if len(self._links) > LINK_CACHE_SIZE:
                self._links.popitem(last=False)
        else:
            self._links.move_to_end(cache_key)
        return url

    def _sign(self, key: str, expires: int, credentials: ReadOnlyCredentials) -> str:
        signed_at = datetime.fromtimestamp(expires - self.window_s, UTC)
        request = AWSRequest(
            method="GET", url=self._object_base + quote(self._object_key(key), safe="/~")
        )
        _SignedAtQueryAuth(credentials, self._region, self.window_s, signed_at).add_auth(request)
        return str(request.url)

    def presigned_key(self, url: str) -> tuple[str, int] | None:
        split = urlsplit(url)
        bare = f"{split.scheme}://{split.netloc}{split.path}"
        if not bare.startswith(self._object_base):
            return None
        object_key = unquote(bare.removeprefix(self._object_base))
        if not object_key.startswith(self.prefix):
            return None
        query = parse_qs(split.query)
        try:
            signed_at = datetime.strptime(query["X-Amz-Date"][0], SIGV4_TIMESTAMP)
            window_s = int(query["X-Amz-Expires"][0])
        except (KeyError, ValueError):
            return None
        if window_s != self.window_s:
            return None
        expires = int(signed_at.replace(tzinfo=UTC).timestamp()) + window_s
        key = object_key.removeprefix(self.prefix)
        if not hmac.compare_digest(self.presigned_url(key, expires), url):
            return None
        return key, expires
