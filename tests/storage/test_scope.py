"""The scope guard: every object URL must resolve into the integration's bucket and prefix.

Resolution is pure computation (no request), so the real backends are built with throwaway
credentials that never reach a server.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from corral import errors
from corral.storage.base import StorageContext
from corral.storage.options import AzureOptions, GcsOptions, LocalOptions, ProviderOptions, S3Options
from corral.storage.registry import open_storage
from corral.storage.scope import ScopedStorage


def _sa_json() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return json.dumps({"type": "service_account", "project_id": "p", "private_key_id": "k1",
                       "private_key": pem, "client_email": "corral@p.iam.gserviceaccount.com",
                       "client_id": "1", "token_uri": "http://127.0.0.1:9/token"})


SA_JSON = _sa_json()


_CACHE: dict[int, ScopedStorage] = {}


def scoped(options: ProviderOptions) -> ScopedStorage:
    if id(options) in _CACHE:
        return _CACHE[id(options)]
    ctx = StorageContext(signing_key=b"k" * 32, integration_id="00000000-0000-0000-0000-000000000001")
    _CACHE[id(options)] = ScopedStorage(open_storage(options, ctx), options, title="media",
                                        strict_client_only=False, ttl_seconds=600)
    return _CACHE[id(options)]


S3 = S3Options(bucket="media", prefix="raw/", region="eu-west-1", access_key_id="AKIA1", secret_access_key="s")
MINIO = S3Options(bucket="media", prefix="raw/", endpoint_url="https://minio.example.com:9000",
                  access_key_id="AKIA1", secret_access_key="s")
AZURE = AzureOptions(account_name="acct", container="media", prefix="raw/", account_key="a2V5a2V5a2V5")
GCS = GcsOptions(bucket="media", prefix="raw/", service_account_json=SA_JSON)
LOCAL = LocalOptions(root="/srv/media", prefix="raw/")

# provider: (options, [(url, key)], {kind of refusal: [urls]})
CASES: dict[str, tuple[ProviderOptions, list[tuple[str, str]], dict[str, list[str]]]] = {
    "s3": (S3, [
        ("s3://media/raw/a.jpg", "raw/a.jpg"),
        ("s3://media/raw/a b+c%20d.jpg", "raw/a b+c%20d.jpg"),  # s3:// URIs are literal
        ("https://media.s3.eu-west-1.amazonaws.com/raw/a%20b%2Bc.jpg", "raw/a b+c.jpg"),
        ("https://media.s3.amazonaws.com/raw/%C3%BC%E6%97%A5.png", "raw/ü日.png"),
        ("https://s3.eu-west-1.amazonaws.com/media/raw/x+y.jpg", "raw/x+y.jpg"),
        ("https://s3-eu-west-1.amazonaws.com/media/raw/v.mp4", "raw/v.mp4"),
        ("https://media.s3.dualstack.eu-west-1.amazonaws.com/raw/v.mp4", "raw/v.mp4"),
    ], {
        "other bucket": ["s3://other/raw/a.jpg", "https://other.s3.amazonaws.com/raw/a.jpg",
                         "https://s3.amazonaws.com/other/raw/a.jpg", "s3://media-2/raw/a.jpg"],
        "prefix": ["s3://media/cooked/a.jpg", "s3://media/rawfile.jpg", "s3://media/raw", "s3://media/"],
        "dots": ["s3://media/raw/../cooked/a.jpg", "https://media.s3.amazonaws.com/raw/%2E%2E/cooked/a.jpg",
                 "s3://media/raw/./a.jpg", "s3://media/raw/sub/.."],
        "other host": ["https://evil.example.com/media/raw/a.jpg", "http://169.254.169.254/latest/meta-data/",
                       "https://media.s3.amazonaws.com.evil.com/raw/a.jpg", "gs://media/raw/a.jpg",
                       "file:///etc/passwd", "https://minio.example.com:9000/media/raw/a.jpg", "raw/a.jpg"],
    }),
    "s3-compatible": (MINIO, [
        ("https://minio.example.com:9000/media/raw/a%20b.jpg", "raw/a b.jpg"),
        ("https://media.minio.example.com:9000/raw/a.jpg", "raw/a.jpg"),
        ("s3://media/raw/a.jpg", "raw/a.jpg"),
    ], {
        "other bucket": ["https://minio.example.com:9000/other/raw/a.jpg"],
        "prefix": ["https://minio.example.com:9000/media/else/a.jpg"],
        "dots": ["https://minio.example.com:9000/media/raw/..%2F..%2Fx"],
        "other host": ["https://minio.example.com/media/raw/a.jpg", "https://s3.amazonaws.com/media/raw/a.jpg",
                       "https://minio.example.com.evil.io:9000/media/raw/a.jpg"],
    }),
    "azure": (AZURE, [
        ("https://acct.blob.core.windows.net/media/raw/a%20b/%C3%BC+1.jpg", "raw/a b/ü+1.jpg"),
        ("az://media/raw/x.jpg", "raw/x.jpg"),
    ], {
        "other container": ["https://acct.blob.core.windows.net/other/raw/a.jpg", "az://other/raw/a.jpg"],
        "prefix": ["https://acct.blob.core.windows.net/media/a.jpg"],
        "dots": ["https://acct.blob.core.windows.net/media/raw/%2e%2e/secret.jpg"],
        "other host": ["https://evil.blob.core.windows.net/media/raw/a.jpg",
                       "https://acct.blob.core.windows.net.evil.com/media/raw/a.jpg",
                       "https://acct.file.core.windows.net/media/raw/a.jpg", "s3://media/raw/a.jpg"],
    }),
    "gcs": (GCS, [
        ("gs://media/raw/a.jpg", "raw/a.jpg"),
        ("https://storage.googleapis.com/media/raw/a%20b+c.jpg", "raw/a b+c.jpg"),
        ("https://storage.cloud.google.com/media/raw/%E6%97%A5.jpg", "raw/日.jpg"),
        ("https://media.storage.googleapis.com/raw/a.jpg", "raw/a.jpg"),
        ("https://storage.googleapis.com/storage/v1/b/media/o/raw%2Fa.jpg", "raw/a.jpg"),
    ], {
        "other bucket": ["gs://other/raw/a.jpg", "https://storage.googleapis.com/other/raw/a.jpg"],
        "prefix": ["gs://media/a.jpg"],
        "dots": ["gs://media/raw/../../etc"],
        "other host": ["https://storage.evil.com/media/raw/a.jpg", "https://googleapis.com/media/raw/a.jpg",
                       "http://metadata.google.internal/computeMetadata/v1/", "s3://media/raw/a.jpg"],
    }),
    "local": (LOCAL, [
        ("file:///srv/media/raw/a%20b.jpg", "raw/a b.jpg"),
        ("/srv/media/raw/x.jpg", "raw/x.jpg"),
        ("raw/y.jpg", "raw/y.jpg"),
    ], {
        "other directory": ["/srv/media-2/raw/a.jpg", "file:///etc/passwd", "/srv/raw/a.jpg"],
        "prefix": ["/srv/media/other/a.jpg"],
        "dots": ["/srv/media/raw/../../../etc/passwd", "raw/../../x", "file:///srv/media/raw/%2e%2e/x"],
        "other host": ["file://evil.com/srv/media/raw/a.jpg", "https://example.com/raw/a.jpg"],
    }),
}


def _flat(kind: str | None = None) -> list[tuple[str, str, str]]:
    out = []
    for provider, (_, ok, bad) in CASES.items():
        if kind is None:
            out += [(provider, url, key) for url, key in ok]
        else:
            out += [(provider, url, k) for k, urls in bad.items() for url in urls]
    return out


@pytest.mark.parametrize("provider, url, key", _flat())
def test_urls_inside_the_scope_resolve(provider: str, url: str, key: str) -> None:
    s = scoped(CASES[provider][0])
    obj = s.resolve(url)
    assert obj.key == key
    assert s.resolve(obj.url).key == key  # the canonical URL parses back


@pytest.mark.parametrize("provider, url, kind", _flat("bad"))
def test_urls_outside_the_scope_are_refused(provider: str, url: str, kind: str) -> None:
    s = scoped(CASES[provider][0])
    with pytest.raises(errors.OutOfScope) as info:
        s.resolve(url)
    assert "outside integration 'media'" in info.value.message
    assert info.value.status == 400
    # Refused before any request: signing refuses it too.
    with pytest.raises(errors.OutOfScope):
        s.sign_get(url)


def test_refusal_messages_say_why(tmp_path: Path) -> None:
    s3 = scoped(S3)
    for url, words in [("s3://other/raw/a.jpg", "bucket 'other'"), ("s3://media/cooked/a", "prefix 'raw/'"),
                       ("s3://media/raw/../a", "'..' path segments"), ("https://evil.com/media/raw/a", "evil.com")]:
        with pytest.raises(errors.OutOfScope) as info:
            s3.resolve(url)
        assert words in info.value.message, info.value.message


keys = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1,
               max_size=60).filter(lambda k: all(p not in (".", "..", "") for p in k.split("/")))


@settings(max_examples=150, deadline=None)
@given(key=keys)
def test_any_key_round_trips_through_every_url_form(key: str) -> None:
    full = "raw/" + key
    for options, forms in [
        (S3, [f"s3://media/{full}", f"https://media.s3.eu-west-1.amazonaws.com/{quote(full)}",
              f"https://s3.amazonaws.com/media/{quote(full)}"]),
        (AZURE, [f"https://acct.blob.core.windows.net/media/{quote(full)}"]),
        (GCS, [f"gs://media/{full}", f"https://storage.googleapis.com/media/{quote(full)}"]),
        (LOCAL, [f"file:///srv/media/{quote(full)}"]),
    ]:
        s = scoped(options)
        for url in forms:
            assert s.resolve(url).key == full, (options.provider, url)
        assert s.resolve(s.storage.url_for(full)).key == full


@settings(max_examples=300, deadline=None)
@given(url=st.one_of(
    st.text(max_size=80),
    st.builds(lambda scheme, host, path: f"{scheme}://{host}/{path}",
              st.sampled_from(["s3", "gs", "az", "http", "https", "file", "ftp"]),
              st.sampled_from(["media", "other", "media.s3.amazonaws.com", "s3.amazonaws.com", "evil.com",
                               "acct.blob.core.windows.net", "storage.googleapis.com", "127.0.0.1:9000", ""]),
              st.text(max_size=40)),
))
def test_nothing_resolves_outside_the_prefix(url: str) -> None:
    for options in (S3, MINIO, AZURE, GCS, LOCAL):
        s = scoped(options)
        try:
            key = s.resolve(url).key
        except errors.OutOfScope:
            continue
        assert key.startswith("raw/")
        assert all(part not in (".", "..") for part in key.split("/"))
        assert "\x00" not in key


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                      max_size=3), max_leaves=6)
setting_names = st.sampled_from(["bucket", "prefix", "region", "endpoint_url", "addressing_style", "auth",
                                 "access_key_id", "secret_access_key", "role_arn", "external_id", "account_name",
                                 "container", "account_key", "sas_token", "tenant_id", "client_id",
                                 "client_secret", "service_account_json", "project", "root", "junk"])


@settings(max_examples=300, deadline=None)
@given(provider=st.sampled_from(["s3", "azure", "gcs", "local", "nope", ""]),
       values=st.dictionaries(setting_names, json_values, max_size=6))
def test_settings_parser_only_ever_raises_validation_failed(provider: str, values: dict[str, object]) -> None:
    from corral.core.integrations import parse_options

    try:
        options = parse_options(provider, values)
    except errors.ValidationFailed as exc:
        assert exc.status == 400 and exc.details
        for secret in ("secret_access_key", "account_key", "sas_token", "client_secret"):
            value = values.get(secret)
            if isinstance(value, str) and len(value) > 6:
                assert value not in exc.message  # inputs are never echoed back
        return
    assert options.provider == provider
    assert set(options.public()).isdisjoint(options.secret_fields)


def _outcome(call: object) -> tuple[str, str]:
    try:
        return "url", call()  # type: ignore[operator]
    except errors.OutOfScope as exc:
        return "refused", exc.message


_URL_HEADS = ["s3://media/", "s3://media/raw/", "gs://media/", "gs://media/raw/", "S3://media/raw/",
              "s3://media-2/raw/", "s3://medi/", "s3://media", "gs://other/raw/", "https://media.s3.amazonaws.com/raw/",
              "https://storage.googleapis.com/media/raw/", "az://media/raw/", "/srv/media/raw/", ""]


@settings(max_examples=400, deadline=None)
@given(provider=st.sampled_from(["s3", "s3-compatible", "gcs", "azure", "local"]),
       head=st.sampled_from(_URL_HEADS),
       tail=st.lists(st.sampled_from(["a", "/", ".", "..", "%2E", "\x00", "ü", " ", "?", "#", "raw/",
                                      "é" * 300, "k" * 1030]), max_size=8).map("".join))
def test_the_canonical_url_fast_path_answers_as_resolve(provider: str, head: str, tail: str) -> None:
    """``canonical_url`` (a bucket's own ``s3://``/``gs://`` URLs checked without the backend's
    round trip) gives ``resolve(url).url``, or the same refusal, for every URL."""
    storage = scoped(CASES[provider][0])
    url = head + tail
    assert _outcome(lambda: storage.canonical_url(url)) == _outcome(lambda: storage.resolve(url).url)


def test_the_canonical_url_fast_path_is_taken_for_s3_and_gcs_only() -> None:
    assert scoped(S3)._canonical == "s3://media/"
    assert scoped(MINIO)._canonical == "s3://media/"
    assert scoped(GCS)._canonical == "gs://media/"
    assert scoped(AZURE)._canonical is None and scoped(LOCAL)._canonical is None

    class Own:  # a backend with URLs of its own: always asked
        def key_for_url(self, url: str) -> str:
            return "raw/" + url.rsplit("/", 1)[-1]

        def url_for(self, key: str) -> str:
            return f"own://{key}"

    storage = ScopedStorage(Own(), S3, title="t", strict_client_only=True, ttl_seconds=60)  # type: ignore[arg-type]
    assert storage.canonical_url("s3://media/raw/x.jpg") == "own://raw/x.jpg"


@given(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40))
@settings(max_examples=200, deadline=None)
def test_an_encoded_url_parses_back_to_its_key(tail: str) -> None:
    """``urls.encoded_url_for_key`` (what a cloud sync's manifest holds for a key with a space):
    a URL of no whitespace that names the same key, for every provider, endpoint or not."""
    from corral.storage import urls

    key = "raw/" + tail
    emulated = GcsOptions(bucket="media", prefix="raw/", service_account_json=SA_JSON,
                          endpoint_url="http://127.0.0.1:9023")
    pathed = S3Options(bucket="media", prefix="raw/", endpoint_url="https://example.com/s3", access_key_id="AKIA1",
                       secret_access_key="s")
    for options in (S3, MINIO, pathed, GCS, emulated, AZURE, LOCAL):
        url = urls.encoded_url_for_key(key, options)
        assert url.isprintable() and " " not in url, url
        assert urls.key_for_url(url, options) == key, (options, url)
