"""Signing throughput: corral's scoped signing vs each provider SDK's own signer.

Run on purpose (not part of the test suite):

    .venv/bin/python -m benchmarks.bench_storage [--urls 5000] [--repeat 3]

Registration and data-row listings sign one URL per file, so signing cost matters at millions
of files.  For each provider the baseline is the SDK's signer called directly on a key
(boto3 ``generate_presigned_url``, azure ``generate_blob_sas``, google ``generate_signed_url``,
the local HMAC); corral's figure is ``ScopedStorage.sign_get(url)`` on the object URL, which
adds URL parsing, the scope guard and error mapping.  Signing is local computation: no server
is contacted (the endpoints below are never reached).  Medians of ``--repeat`` runs in one
session; the ratio is corral's time over the baseline's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from corral.storage import local
from corral.storage.base import StorageContext
from corral.storage.options import AzureOptions, GcsOptions, LocalOptions, ProviderOptions, S3Options
from corral.storage.registry import open_storage
from corral.storage.scope import ScopedStorage

AZURE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _sa_json() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return json.dumps({"type": "service_account", "project_id": "bench", "private_key_id": "k",
                       "private_key": pem, "client_email": "bench@bench.iam.gserviceaccount.com",
                       "client_id": "1", "token_uri": "http://127.0.0.1:9/token"})


def _scoped(options: ProviderOptions) -> ScopedStorage:
    ctx = StorageContext(signing_key=b"k" * 32, integration_id="00000000-0000-0000-0000-000000000001")
    return ScopedStorage(open_storage(options, ctx), options, title="bench", strict_client_only=False,
                         ttl_seconds=3600)


def _baselines(n: int) -> dict[str, tuple[ProviderOptions, Callable[[str], str], Callable[[int], str]]]:
    import boto3
    from azure.storage.blob import BlobSasPermissions, generate_blob_sas
    from botocore.config import Config
    from google.cloud import storage as gcs
    from google.oauth2 import service_account

    # SigV4, as corral signs (boto3's bare default for presigned GETs is the legacy SigV2).
    s3 = boto3.client("s3", region_name="eu-west-1", aws_access_key_id="AKIABENCH",
                      aws_secret_access_key="secret",
                      config=Config(signature_version="s3v4", s3={"addressing_style": "virtual"}))
    sa = _sa_json()
    creds = service_account.Credentials.from_service_account_info(json.loads(sa))
    bucket = gcs.Client(project="bench", credentials=creds).bucket("media")

    def azure_sign(key: str) -> str:
        sas = generate_blob_sas("acct", "media", key, account_key=AZURE_KEY,
                                permission=BlobSasPermissions(read=True),
                                expiry=datetime.now(UTC) + timedelta(hours=1))
        return f"https://acct.blob.core.windows.net/media/{key}?{sas}"

    return {
        "s3": (S3Options(bucket="media", region="eu-west-1", access_key_id="AKIABENCH",
                         secret_access_key="secret"),
               lambda k: s3.generate_presigned_url("get_object", Params={"Bucket": "media", "Key": k},
                                                   ExpiresIn=3600),
               lambda i: f"https://media.s3.eu-west-1.amazonaws.com/frames/{i:07d}%20cam.jpg"),
        "azure": (AzureOptions(account_name="acct", container="media", account_key=AZURE_KEY), azure_sign,
                  lambda i: f"https://acct.blob.core.windows.net/media/frames/{i:07d}%20cam.jpg"),
        "gcs": (GcsOptions(bucket="media", service_account_json=sa),
                lambda k: bucket.blob(k).generate_signed_url(version="v4", expiration=timedelta(hours=1)),
                lambda i: f"gs://media/frames/{i:07d} cam.jpg"),
        "local": (LocalOptions(root="/srv/media"),
                  lambda k: local.sign(b"k" * 32, "GET", "i", k, int(time.time()) + 3600),
                  lambda i: f"file:///srv/media/frames/{i:07d}%20cam.jpg"),
    }


def _rate(fn: Callable[[int], object], n: int, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        runs.append(n / (time.perf_counter() - start))
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--urls", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"signing {args.urls} URLs per run, median of {args.repeat} runs (URLs/s)")
    print(f"{'provider':<8} {'SDK signer':>12} {'corral':>12} {'corral/SDK':>11}   resolve only")
    for provider, (options, baseline, url_of) in _baselines(args.urls).items():
        scoped = _scoped(options)
        base = _rate(lambda i, b=baseline: b(f"frames/{i:07d} cam.jpg"), args.urls, args.repeat)  # type: ignore[misc]
        ours = _rate(lambda i, s=scoped, u=url_of: s.sign_get(u(i)), args.urls, args.repeat)  # type: ignore[misc]
        resolve = _rate(lambda i, s=scoped, u=url_of: s.resolve(u(i)), args.urls, args.repeat)  # type: ignore[misc]
        print(f"{provider:<8} {base:>12,.0f} {ours:>12,.0f} {ours / base:>10.2f}x   {resolve:>10,.0f}")


if __name__ == "__main__":
    main()
