"""``integration check``: can corral (and the browsers of its users) use this bucket?

Runs in order, each step with an actionable message:

1. credentials, bucket and list permission: list one page of the integration's prefix;
2. read permission: HEAD and read one byte of an object found there (skipped for strict
   client-only integrations, which corral never reads);
3. CORS: do the bucket's rules let the web UI's origin GET objects?  If not, the message has a
   rule the user can paste, and ``apply_cors`` can set it where the credentials allow.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs

from corral import errors
from corral.storage import base
from corral.storage.base import CorsRule, cors_allows, recommended_cors_rule
from corral.storage.localroots import LocalRootRefused
from corral.storage.netpolicy import EndpointRefused
from corral.storage.options import AzureOptions, GcsOptions, ProviderOptions, S3Options
from corral.storage.scope import ScopedStorage

T = TypeVar("T")

Status = Literal["ok", "failed", "warning", "skipped"]

_PERMISSIONS = {
    "s3": {"list": "s3:ListBucket", "read": "s3:GetObject", "cors": "s3:GetBucketCORS and s3:PutBucketCORS"},
    "azure": {
        "list": "the Storage Blob Data Reader role (or a SAS with l permission)",
        "read": "the Storage Blob Data Reader role (or a SAS with r permission)",
        "cors": "the Storage Account Contributor role (or the account key)",
    },
    "gcs": {
        "list": "storage.objects.list (roles/storage.objectViewer)",
        "read": "storage.objects.get (roles/storage.objectViewer)",
        "cors": "storage.buckets.get and storage.buckets.update",
    },
    "local": {
        "list": "read and execute permission on the directory for the corral server's user",
        "read": "read permission on the files for the corral server's user",
        "cors": "",
    },
}


@dataclass
class CheckStep:
    name: str
    status: Status
    message: str
    hint: str | None = None


@dataclass
class CheckReport:
    integration: str
    provider: str
    scope: str
    origin: str
    steps: list[CheckStep] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(step.status != "failed" for step in self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}

    def add(self, name: str, status: Status, message: str, hint: str | None = None) -> None:
        self.steps.append(CheckStep(name, status, message, hint))


def cors_snippet(options: ProviderOptions, rule: CorsRule) -> str:
    """The rule in the provider's own format, with the command that applies it."""
    if isinstance(options, S3Options):
        body = {
            "CORSRules": [
                {
                    "AllowedOrigins": list(rule.allowed_origins),
                    "AllowedMethods": list(rule.allowed_methods),
                    "AllowedHeaders": list(rule.allowed_headers),
                    "ExposeHeaders": list(rule.exposed_headers),
                    "MaxAgeSeconds": rule.max_age_seconds,
                }
            ]
        }
        # An S3-compatible store (MinIO, Ceph, R2, …) is reached at its own endpoint, not AWS's.
        endpoint = f" --endpoint-url {options.endpoint_url}" if options.endpoint_url else ""
        return (
            f"Save as cors.json:\n{json.dumps(body, indent=2)}\nthen run: aws s3api put-bucket-cors "
            f"--bucket {options.bucket} --cors-configuration file://cors.json{endpoint}"
        )
    if isinstance(options, AzureOptions):
        return (
            "Run: az storage cors add --services b --account-name "
            f"{options.account_name} --origins {' '.join(rule.allowed_origins)} --methods "
            f"{' '.join(rule.allowed_methods)} --allowed-headers '*' --exposed-headers "
            f"{' '.join(rule.exposed_headers)} --max-age {rule.max_age_seconds}\n"
            "(Azure CORS rules apply to the whole storage account.)"
        )
    if isinstance(options, GcsOptions):
        body_gcs = [
            {
                "origin": list(rule.allowed_origins),
                "method": list(rule.allowed_methods),
                "responseHeader": list(rule.exposed_headers),
                "maxAgeSeconds": rule.max_age_seconds,
            }
        ]
        return (
            f"Save as cors.json:\n{json.dumps(body_gcs, indent=2)}\nthen run: gcloud storage buckets "
            f"update gs://{options.bucket} --cors-file=cors.json"
        )
    return ""


def _access_failure(report: CheckReport, exc: OSError, where: str, perms: dict[str, str]) -> None:
    """Record why talking to the store failed, as the step the user has to fix."""
    if isinstance(exc, base.ServerCredentialsRefused):
        report.add(
            "credentials",
            "failed",
            f"corral may not use the server's own credentials here: {exc}",
            "Give the integration credentials of its own, or ask the server's operator to set "
            "CORRAL_ALLOW_AMBIENT_CREDENTIALS.",
        )
    elif isinstance(exc, base.CredentialsMissing):
        report.add(
            "credentials",
            "failed",
            f"No credentials: {exc}",
            "Give the integration credentials (see `corral integration create --help`), or "
            "configure the server's ambient credentials.",
        )
    elif isinstance(exc, EndpointRefused):
        report.add(
            "endpoint",
            "failed",
            f"corral may not connect there: {exc}",
            "Use a public endpoint, or ask the server's operator to allow this one in "
            "CORRAL_ALLOWED_ENDPOINTS.",
        )
    elif isinstance(exc, LocalRootRefused):
        report.add(
            "root",
            "failed",
            f"corral may not serve this directory: {exc}",
            "Ask the server's operator to allow a parent directory in CORRAL_LOCAL_ROOTS.",
        )
    elif isinstance(exc, base.CredentialsRejected):
        report.add(
            "credentials",
            "failed",
            f"The store rejected the credentials: {exc}",
            "Check the key/secret (or SAS, or service-account key) and that it has not expired; "
            "then recreate the integration or update its settings.",
        )
    elif isinstance(exc, base.BucketNotFound):
        report.add("credentials", "ok", "The store accepted the credentials.")
        report.add(
            "bucket",
            "failed",
            f"{where}: the bucket does not exist ({exc})",
            "Check the bucket/container name, the region and the endpoint URL.",
        )
    elif isinstance(exc, PermissionError):
        report.add("credentials", "ok", "The store accepted the credentials.")
        report.add(
            "list", "failed", f"Not allowed to list {where}: {exc}", f"Grant {perms['list']} on the bucket."
        )
    elif isinstance(exc, (TimeoutError, ConnectionError)):
        report.add(
            "credentials",
            "failed",
            f"Could not reach the store: {exc}",
            "Check the endpoint URL and that this server can reach it.",
        )
    else:
        report.add("list", "failed", f"Listing {where} failed: {exc}")


def _listing_step(report: CheckReport, scoped: ScopedStorage) -> str | None:
    """Step 1: credentials, bucket, list.  Returns a key to test reading with, if one was found."""
    where = scoped.options.scope_label()
    try:
        first = next(iter(scoped.storage.iter_prefix(scoped.prefix, page_size=1)), None)
    except OSError as exc:
        _access_failure(report, exc, where, _PERMISSIONS[scoped.options.provider])
        return None
    report.add("credentials", "ok", "The store accepted the credentials.")
    report.add("bucket", "ok", f"{where} exists.")
    report.add("list", "ok", f"Listing {where} works" + ("." if first else " (it is empty)."))
    return first.key if first else None


def _read_step(report: CheckReport, scoped: ScopedStorage, key: str | None) -> None:
    perms = _PERMISSIONS[scoped.options.provider]
    if scoped.strict_client_only:
        report.add(
            "read",
            "skipped",
            "Strict client-only: corral never reads this integration's media; "
            "browsers fetch it with signed URLs.",
        )
        return
    if key is None:
        report.add("read", "skipped", "No object under the prefix to test reading with.")
        return
    url = scoped.storage.url_for(key)
    try:
        scoped.stat(url)
        scoped.read(url, 0, 1)
    except errors.CorralError as exc:
        hint = f"Grant {perms['read']}." if isinstance(exc, errors.AccessDenied) else None
        report.add("read", "failed", exc.message, hint)
        return
    report.add("read", "ok", f"Reading {url} works.")


def _cors_step(report: CheckReport, scoped: ScopedStorage, origin: str) -> None:
    rule = recommended_cors_rule(origin)
    if not scoped.storage.capabilities.cors_configurable:
        ok = cors_allows(scoped.get_cors(), origin, "GET")
        report.add(
            "cors",
            "ok" if ok else "warning",
            "Files are served by corral itself; no bucket CORS rule is needed."
            if ok
            else f"corral serves these files from {scoped.get_cors()[0].allowed_origins[0]}, not from "
            f"{origin}; set CORRAL_PUBLIC_URL to the address users open.",
        )
        return
    snippet = cors_snippet(scoped.options, rule)
    try:
        rules = scoped.storage.get_cors()
    except PermissionError as exc:
        report.add(
            "cors",
            "warning",
            f"Could not read the CORS rules ({exc}); make sure browsers on {origin} may GET objects.",
            snippet,
        )
        return
    except OSError as exc:
        report.add("cors", "warning", f"Could not read the CORS rules: {exc}", snippet)
        return
    if cors_allows(rules, origin, "GET"):
        report.add("cors", "ok", f"CORS lets {origin} GET objects.")
    else:
        report.add(
            "cors",
            "failed",
            f"CORS does not let the web UI at {origin} GET objects, so browsers cannot show the media.",
            f"{snippet}\nOr let corral set it: corral integration cors {report.integration!r} --apply",
        )


def check(scoped: ScopedStorage, origin: str, report: CheckReport | None = None) -> CheckReport:
    report = report or CheckReport(
        scoped.title, scoped.options.provider, scoped.options.scope_label(), origin
    )
    key = _step(report, "list", lambda: _listing_step(report, scoped))
    if any(step.status == "failed" for step in report.steps):
        report.add("read", "skipped", "Skipped: listing failed.")
    else:
        _step(report, "read", lambda: _read_step(report, scoped, key))
    if any(step.name == "credentials" and step.status == "failed" for step in report.steps):
        report.add("cors", "skipped", "Skipped: no working credentials.")
    else:
        _step(report, "cors", lambda: _cors_step(report, scoped, origin))
    _signing_step(report, scoped.options)
    return report


def _step(report: CheckReport, name: str, run: Callable[[], T]) -> T | None:
    """Run one step; whatever store error escapes it is that step's failure, never the check's:
    the check always answers with a report."""
    try:
        return run()
    except errors.CorralError as exc:
        report.add(name, "failed", exc.message)
    except OSError as exc:
        report.add(name, "failed", str(exc) or type(exc).__name__)
    return None


def _signing_step(report: CheckReport, options: ProviderOptions) -> None:
    """What a member who may get a signed URL can do with it, where that is more than one file."""
    if not isinstance(options, AzureOptions) or options.auth != "sas_token" or options.sas_token is None:
        return
    query = parse_qs(options.sas_token.get_secret_value())
    granted = query.get("sp", ["?"])[0]
    expiry = query.get("se", ["(no expiry given)"])[0]
    scope = "the whole account" if "srt" in query else "the whole container"
    report.add(
        "signed-urls",
        "warning",
        "This integration signs with its own SAS token, which corral cannot narrow: every signed URL "
        f"carries the whole token, so every member who may see its files can use it on {scope} with "
        f"permissions {granted!r} until {expiry}.",
        "Give the integration an account key or a service principal instead: corral then signs a "
        "read-only SAS for one blob at a time, valid for the integration's signed-URL lifetime.",
    )


def apply_cors(scoped: ScopedStorage, origin: str) -> tuple[bool, list[CorsRule]]:
    """Add corral's rule to the bucket's (keeping the others).  Returns (changed, rules now)."""
    rules = scoped.get_cors()
    if cors_allows(rules, origin, "GET"):
        return False, rules
    new_rules = [*rules, recommended_cors_rule(origin)]
    try:
        scoped.set_cors(new_rules)
    except errors.AccessDenied as exc:
        perms = _PERMISSIONS[scoped.options.provider]["cors"]
        raise errors.AccessDenied(
            f"{exc.message}. The credentials need {perms}; or paste this rule yourself:\n"
            f"{cors_snippet(scoped.options, recommended_cors_rule(origin))}"
        ) from None
    return True, scoped.get_cors()


def check_opening(
    open_scoped: Callable[[], ScopedStorage], options: ProviderOptions, title: str, origin: str
) -> CheckReport:
    """``check``, also reporting a backend that fails to open (e.g. no ambient credentials)."""
    report = CheckReport(title, options.provider, options.scope_label(), origin)
    try:
        scoped = open_scoped()
    except OSError as exc:
        _access_failure(report, exc, options.scope_label(), _PERMISSIONS[options.provider])
        report.add("read", "skipped", "Skipped: could not open the integration.")
        report.add("cors", "skipped", "Skipped: could not open the integration.")
        return report
    try:
        return check(scoped, origin, report)
    finally:
        scoped.close()
