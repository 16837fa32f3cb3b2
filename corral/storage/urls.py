"""Object URLs as users write them in manifests, mapped to (bucket, key) for one integration.

Accepted forms:

* S3: ``s3://bucket/key``; ``https://bucket.s3[.-]REGION.amazonaws.com/key`` (virtual-hosted,
  also dualstack and accelerate); ``https://s3[.-]REGION.amazonaws.com/bucket/key``
  (path-style); for an S3-compatible endpoint, ``ENDPOINT/bucket/key`` and
  ``https://bucket.ENDPOINT-HOST/key``.
* Azure: ``https://ACCOUNT.blob.core.windows.net/container/blob`` (and the sovereign clouds'
  hosts); ``az://container/blob``; with a custom endpoint, ``ENDPOINT/container/blob``.
* GCS: ``gs://bucket/object``; ``https://storage.googleapis.com/bucket/object``;
  ``https://storage.cloud.google.com/bucket/object``; ``https://bucket.storage.googleapis.com/object``;
  the JSON API's ``/storage/v1/b/bucket/o/object`` and ``/download/storage/v1/...`` forms.
* Local: ``file:///root/path``, an absolute path under the root, or a path relative to it.

``http(s)://`` URLs are percent-decoded (``%20`` is a space, ``+`` stays a plus), as a browser
would send them.  ``s3://``, ``gs://`` and ``az://`` URIs are taken literally, as the AWS CLI and
gsutil do, so a key may contain ``%``, ``?`` or ``#``.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit

from corral.storage.base import OutOfScope
from corral.storage.options import AzureOptions, GcsOptions, LocalOptions, ProviderOptions, S3Options

_AWS_HOST = re.compile(
    r"^(?:(?P<bucket>.+)\.)?s3(?:-accelerate)?(?:[.-](?:dualstack\.)?(?P<region>[a-z0-9-]+))?"
    r"\.amazonaws\.com(?:\.cn)?$"
)
_AZURE_HOST = re.compile(
    r"^(?P<account>[a-z0-9]+)\.blob\.core\.(?:windows\.net|chinacloudapi\.cn|usgovcloudapi\.net)$"
)
_GCS_HOSTS = {"storage.googleapis.com", "storage.cloud.google.com"}
_GCS_VHOST = re.compile(r"^(?P<bucket>.+)\.storage\.googleapis\.com$")


def _split_uri(url: str, scheme: str) -> tuple[str, str]:
    rest = url[len(scheme) + 3:]
    bucket, _, key = rest.partition("/")
    return bucket, key


def _http_parts(url: str) -> tuple[str, str]:
    """(lower-case host[:port], percent-decoded path without the leading slash)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise OutOfScope(f"{url!r} is not a valid URL ({exc})") from None
    host = (parts.hostname or "").lower()
    if port is not None:
        host = f"{host}:{port}"
    return host, unquote(parts.path)[1:]


def _endpoint_parts(endpoint: str) -> tuple[str, str]:
    host, path = _http_parts(endpoint)
    return host, path.strip("/")


_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://").match  # (re.match's cache look-up: a third of the call)


def _scheme(url: str) -> str:
    match = _SCHEME(url)
    return match.group(1).lower() if match else ""


def parse_s3(url: str, options: S3Options) -> tuple[str, str]:
    scheme = _scheme(url)
    if scheme == "s3":
        return _split_uri(url, "s3")
    if scheme not in ("http", "https"):
        raise OutOfScope(f"{url!r} is not an S3 URL (expected s3://bucket/key or an https:// URL)")
    host, path = _http_parts(url)
    if options.endpoint_url:
        ep_host, ep_path = _endpoint_parts(options.endpoint_url)
        if host == ep_host:
            if ep_path:
                if not path.startswith(ep_path + "/"):
                    raise OutOfScope(f"{url!r} is not under the endpoint {options.endpoint_url}")
                path = path[len(ep_path) + 1:]
            bucket, _, key = path.partition("/")
            return bucket, key
        if host.endswith("." + ep_host):
            return host[: -len(ep_host) - 1], path
        raise OutOfScope(f"{url!r} points at host {host!r}, not at this integration's endpoint "
                         f"{options.endpoint_url}")
    match = _AWS_HOST.match(host.split(":")[0])
    if not match:
        raise OutOfScope(f"{url!r} points at host {host!r}, which is not Amazon S3 (set the "
                         "integration's endpoint URL for S3-compatible stores)")
    if match.group("bucket"):
        return match.group("bucket"), path
    bucket, _, key = path.partition("/")
    return bucket, key


def parse_azure(url: str, options: AzureOptions) -> tuple[str, str]:
    scheme = _scheme(url)
    if scheme in ("az", "azure"):
        return _split_uri(url, scheme)
    if scheme not in ("http", "https"):
        raise OutOfScope(f"{url!r} is not an Azure Blob URL "
                         "(expected https://ACCOUNT.blob.core.windows.net/container/blob)")
    host, path = _http_parts(url)
    if options.endpoint_url:
        ep_host, ep_path = _endpoint_parts(options.endpoint_url)
        if host != ep_host or (ep_path and not path.startswith(ep_path + "/")):
            raise OutOfScope(f"{url!r} is not under this integration's blob endpoint "
                             f"{options.endpoint_url}")
        path = path[len(ep_path) + 1:] if ep_path else path
    else:
        match = _AZURE_HOST.match(host)
        if not match:
            raise OutOfScope(f"{url!r} points at host {host!r}, which is not an Azure Blob endpoint")
        if match.group("account") != options.account_name:
            raise OutOfScope(f"{url!r} is in storage account {match.group('account')!r}, not in "
                             f"{options.account_name!r}")
    container, _, blob = path.partition("/")
    return container, blob


def parse_gcs(url: str, options: GcsOptions) -> tuple[str, str]:
    scheme = _scheme(url)
    if scheme == "gs":
        return _split_uri(url, "gs")
    if scheme not in ("http", "https"):
        raise OutOfScope(f"{url!r} is not a GCS URL (expected gs://bucket/object or an https:// URL)")
    host, path = _http_parts(url)
    if options.endpoint_url:
        ep_host, _ = _endpoint_parts(options.endpoint_url)
        allowed = host == ep_host
    else:
        vhost = _GCS_VHOST.match(host)
        if vhost:
            return vhost.group("bucket"), path
        allowed = host in _GCS_HOSTS
    if not allowed:
        raise OutOfScope(f"{url!r} points at host {host!r}, which is not Google Cloud Storage")
    for api in ("storage/v1/b/", "download/storage/v1/b/"):
        if path.startswith(api):
            bucket, _, rest = path[len(api):].partition("/")
            if rest.startswith("o/"):
                return bucket, rest[2:]
    bucket, _, key = path.partition("/")
    return bucket, key


def parse_local(url: str, options: LocalOptions) -> tuple[str, str]:
    scheme = _scheme(url)
    if scheme == "file":
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise OutOfScope(f"{url!r} names host {parts.netloc!r}; file URLs must be local")
        path = unquote(parts.path)
    elif scheme:
        raise OutOfScope(f"{url!r} is not a local path or file:// URL")
    elif url.startswith("/"):
        path = url
    else:
        return "", url
    root = options.root.rstrip("/") + "/"
    if not path.startswith(root):
        raise OutOfScope(f"{url!r} is not under this integration's directory {options.root}")
    return "", path[len(root):]


def bucket_and_key(url: str, options: ProviderOptions) -> tuple[str, str]:
    """Split ``url`` into (bucket, key) for the provider of ``options`` (``OutOfScope`` if it can't)."""
    if not isinstance(url, str) or not url or url.isspace():  # (strip() would copy the URL)
        raise OutOfScope("the object URL is empty")
    # Not stripped: a key may legally start or end with whitespace.
    if isinstance(options, S3Options):
        return parse_s3(url, options)
    if isinstance(options, AzureOptions):
        return parse_azure(url, options)
    if isinstance(options, GcsOptions):
        return parse_gcs(url, options)
    if isinstance(options, LocalOptions):
        return parse_local(url, options)
    raise TypeError(f"unknown options {type(options).__name__}")


def key_for_url(url: str, options: ProviderOptions) -> str:
    """The key ``url`` names inside the integration's bucket; ``OutOfScope`` for anything else."""
    bucket, key = bucket_and_key(url, options)
    if bucket != options.bucket_name:
        kind = "container" if isinstance(options, AzureOptions) else "bucket"
        raise OutOfScope(f"{url!r} is in {kind} {bucket!r}, not in this integration's "
                         f"{kind} {options.bucket_name!r}")
    return key


def canonical_prefix(options: object) -> str | None:
    """The start every canonical URL of the integration's bucket has, when a URL that starts
    with it is its own canonical form: ``s3://BUCKET/`` and ``gs://BUCKET/`` (``parse_s3`` and
    ``parse_gcs`` split such a URL at its first ``/`` after the bucket, and ``url_for_key``
    writes the key back after the same start).  None for other providers, whose canonical URLs
    are quoted or rebuilt (Azure's ``https://``, local ``file://``)."""
    if not isinstance(options, (S3Options, GcsOptions)) or not options.bucket or "/" in options.bucket:
        return None  # (a bucket holds no "/": the options refuse one)
    return f"{'s3' if isinstance(options, S3Options) else 'gs'}://{options.bucket}/"


def url_for_key(key: str, options: ProviderOptions) -> str:
    """The canonical URL for ``key``: what corral stores and shows, and what parses back to ``key``."""
    if isinstance(options, S3Options):
        return f"s3://{options.bucket}/{key}"
    if isinstance(options, GcsOptions):
        return f"gs://{options.bucket}/{key}"
    if isinstance(options, AzureOptions):
        base = options.endpoint_url or f"https://{options.account_name}.blob.core.windows.net"
        return f"{base}/{options.container}/{quote(key, safe='/')}"
    if isinstance(options, LocalOptions):
        return "file://" + quote(f"{options.root.rstrip('/')}/{key}", safe="/")
    raise TypeError(f"unknown options {type(options).__name__}")


def encoded_url_for_key(key: str, options: ProviderOptions) -> str:
    """A URL for ``key`` that percent-encodes it, and parses back to it: ``url_for_key``'s
    ``s3://`` and ``gs://`` URIs hold the key literally, so one with a space or a control
    character in it has no such URI a manifest accepts (``registration.entries.check_url``);
    this is the ``https://`` form (the endpoint's, for an S3-compatible or emulated store),
    which is percent-decoded.  Other providers' canonical URLs are percent-encoded already."""
    if isinstance(options, S3Options | GcsOptions):
        if options.endpoint_url:
            parts = urlsplit(options.endpoint_url)
            base = f"{parts.scheme}://{parts.netloc}"
            if isinstance(options, S3Options) and parts.path.strip("/"):
                base += "/" + parts.path.strip("/")  # (an S3 endpoint's path is read before the bucket)
        else:
            base = "https://s3.amazonaws.com" if isinstance(options, S3Options) else "https://storage.googleapis.com"
        return f"{base}/{options.bucket}/{quote(key, safe='/')}"
    return url_for_key(key, options)
