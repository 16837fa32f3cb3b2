"""What a user types to connect a bucket: one pydantic model per provider.

These models import no cloud SDK, so the API and CLI can validate input (and generate docs)
without the extras installed.  Each model knows which of its fields are secrets; those are
encrypted at rest and never returned (``public()`` leaves them out, ``secrets()`` has only them).
"""

from __future__ import annotations

import base64
import json
import re
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from corral.closedmodel import ClosedModel
from corral.storage import netpolicy

Provider = Literal["s3", "azure", "gcs", "local"]
PROVIDERS: tuple[Provider, ...] = ("s3", "azure", "gcs", "local")

_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_REGION_RE = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")
_AZURE_ACCOUNT_RE = re.compile(r"^[a-z0-9]{3,24}$")
_AZURE_CONTAINER_RE = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*$|^\$root$")


def _check_prefix(value: str) -> str:
    value = value.lstrip("/")
    parts = value.split("/")
    if any(p in (".", "..") for p in parts):
        raise ValueError("prefix may not contain '.' or '..' path segments")
    if value and not value.endswith("/"):
        value += "/"
    return value


#: The longest signed-URL lifetime of every provider (S3's and GCS's limit).
MAX_SIGNED_TTL = 7 * 24 * 3600
#: With token auth (service principal, server identity) Azure signs with a user delegation key,
#: which lives at most 7 days; corral keeps 10 minutes of it in hand (``storage/azure.py``), and
#: rounds an expiry up to the next second.
AZURE_DELEGATION_MAX_TTL = MAX_SIGNED_TTL - 11 * 60

#: The longest endpoint URL accepted (as for an embedding key's endpoint).
MAX_ENDPOINT_URL = 2048


def _check_endpoint(value: str | None, example: str = "https://s3.eu-central-1.example.com") -> str | None:
    """An endpoint URL the server will connect to: http(s), a host, a valid port, nothing else.

    What every SDK would read alike: no whitespace or control character (parsers drop or keep
    them differently), no query string or fragment.
    """
    if value is None or value == "":
        return None
    if len(value) > MAX_ENDPOINT_URL:
        raise ValueError(f"must be a URL of at most {MAX_ENDPOINT_URL} characters")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        host, port = parts.hostname, parts.port
    except ValueError as exc:  # "Invalid IPv6 URL", a port that is not a number from 0 to 65535
        raise ValueError(f"is not a valid URL ({exc}); expected e.g. {example}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError(f"must be an http:// or https:// URL, e.g. {example}")
    if parts.username is not None or parts.password is not None:
        # Settings are stored in clear, shown to every member and copied into signed URLs.
        raise ValueError("must not contain a user name or password (user:password@): give credentials "
                         "in the integration's credential fields")
    if port == 0:
        raise ValueError("must not name port 0")
    if (problem := netpolicy.host_name_problem(host)) is not None:
        raise ValueError(f"is refused: {problem}; e.g. {example}")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query string or fragment")
    return value.rstrip("/")


def _check_token(value: SecretStr | None, *, spaces: bool = False) -> SecretStr | None:
    """A credential that travels in an HTTP header or a URL: no control characters (a pasted line
    break), and no spaces unless ``spaces`` (they would break the header or the URL)."""
    if value is not None:
        text = value.get_secret_value()
        if any(not c.isprintable() or (c.isspace() and not (spaces and c == " ")) for c in text):
            allowed = "control characters" if spaces else "spaces or control characters"
            raise ValueError(f"must not contain {allowed} (was it pasted with a line break?)")
    return value


def _is_connection_string(text: str) -> bool:
    """Whether ``text`` is an Azure Storage connection string (``Name=value;…``)."""
    return any(f"{name}=" in text for name in ("AccountKey", "SharedAccessSignature", "AccountName",
                                                "DefaultEndpointsProtocol", "BlobEndpoint"))


def strip_userinfo(url: str) -> str:
    """``url`` without a ``user:password@`` part (for showing settings an older corral accepted)."""
    if "@" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


class ProviderOptions(ClosedModel):
    """Fields every provider shares (an unknown one is refused, naming those accepted)."""

    model_config = ConfigDict(str_strip_whitespace=True)
    provider: ClassVar[Provider]
    secret_fields: ClassVar[frozenset[str]] = frozenset()

    prefix: str = Field("", description="Only objects under this key prefix belong to the integration.")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return _check_prefix(v)

    def public(self) -> dict[str, Any]:
        """The non-secret settings (safe to store in clear and to show)."""
        return self.model_dump(mode="json", exclude=set(self.secret_fields), exclude_none=True)

    def secrets(self) -> dict[str, str]:
        """Only the secret fields that are set, as plain strings (to be encrypted)."""
        out: dict[str, str] = {}
        for name in self.secret_fields:
            value = getattr(self, name)
            if value is not None:
                out[name] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        return out

    @property
    def bucket_name(self) -> str:
        raise NotImplementedError

    def scope_label(self) -> str:
        """Where the integration points, for messages (``s3://bucket/prefix/``)."""
        raise NotImplementedError

    def max_signed_ttl(self) -> tuple[int, str]:
        """The longest signed-URL lifetime these settings can sign, in seconds, and why."""
        return MAX_SIGNED_TTL, "7 days"

    #: Fields holding a URL the server will connect to, chosen by whoever saves the integration.
    endpoint_fields: ClassVar[tuple[str, ...]] = ()

    def server_credentials(self) -> str | None:
        """How these settings would use the server's own cloud credentials (for the message
        refusing them), or None when they bring their own (``allow_ambient_credentials``)."""
        return "auth ambient" if getattr(self, "auth", None) == "ambient" else None

    #: Host names (or, with a leading dot, domains) of the provider's own services: the only
    #: endpoints the server's own bearer tokens may be sent to (:meth:`foreign_token_endpoints`).
    own_hosts: ClassVar[tuple[str, ...]] = ()

    def foreign_token_endpoints(self) -> dict[str, str]:
        """field → URL of each endpoint that would be handed the server's own bearer tokens
        (these settings use the server's credentials) but is not one of the provider's own
        hosts.  Empty for providers that sign requests instead of sending tokens (S3)."""
        if not self.own_hosts or self.server_credentials() is None:
            return {}
        value = getattr(self, "endpoint_url", None)  # the service the token is sent to
        if not value:
            return {}
        host = (urlsplit(str(value)).hostname or "").lower().rstrip(".")
        if any(host == h or (h.startswith(".") and host.endswith(h)) for h in self.own_hosts):
            return {}
        return {"endpoint_url": str(value)}

    def endpoints(self) -> dict[str, str]:
        """field → URL for every endpoint set on this integration (checked by the endpoint policy)."""
        out: dict[str, str] = {}
        for name in self.endpoint_fields:
            value = getattr(self, name, None)
            if value:
                out[name] = str(value)
        return out

    @classmethod
    def load(cls, config: dict[str, Any], secrets: dict[str, str] | None) -> ProviderOptions:
        return cls.model_validate({**config, **(secrets or {})})


class S3Options(ProviderOptions):
    provider: ClassVar[Provider] = "s3"
    secret_fields: ClassVar[frozenset[str]] = frozenset(
        {"access_key_id", "secret_access_key", "session_token", "external_id"}
    )

    bucket: str = Field(description="Bucket name.")
    region: str | None = Field(None, description="Region, e.g. eu-west-1 (default: the SDK's).")
    endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint (MinIO, Wasabi, R2, OTC OSS, Oracle, CoreWeave)."
    )
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        "auto", description="Bucket in the path (path) or in the host name (virtual)."
    )
    auth: Literal["access_key", "role", "ambient"] | None = Field(
        None, description="access_key, role (assume an IAM role through STS) or ambient (the "
        "server's own credentials). Inferred from the other fields when omitted."
    )
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    role_arn: str | None = Field(None, description="IAM role to assume, arn:aws:iam::123456789012:role/name.")
    external_id: SecretStr | None = Field(None, description="External id the role's trust policy requires.")
    sts_endpoint_url: str | None = Field(None, description="STS endpoint (default: AWS's).")

    endpoint_fields: ClassVar[tuple[str, ...]] = ("endpoint_url", "sts_endpoint_url")

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not _BUCKET_RE.match(v) or "/" in v:
            raise ValueError("bucket names are 1-255 letters, digits, '.', '-' or '_' (no '/' or scheme)")
        return v

    @field_validator("endpoint_url", "sts_endpoint_url")
    @classmethod
    def _endpoints(cls, v: str | None) -> str | None:
        return _check_endpoint(v)

    @field_validator("access_key_id", "session_token")
    @classmethod
    def _header_tokens(cls, v: SecretStr | None) -> SecretStr | None:
        return _check_token(v)

    @field_validator("secret_access_key")
    @classmethod
    def _secret_key(cls, v: SecretStr | None) -> SecretStr | None:
        return _check_token(v, spaces=True)

    @field_validator("region")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        # botocore's own rule (it refuses other names only when a client is made); the region
        # becomes part of the host name of AWS's endpoints.
        if v and not _REGION_RE.match(v):
            raise ValueError("a region is letters, digits and hyphens, e.g. eu-west-1")
        return v or None

    @model_validator(mode="after")
    def _auth(self) -> S3Options:
        if self.auth is None:
            if self.role_arn:
                self.auth = "role"
            elif self.access_key_id or self.secret_access_key:
                self.auth = "access_key"
            else:
                self.auth = "ambient"
        if self.auth == "ambient" and (self.access_key_id or self.secret_access_key or self.session_token):
            raise ValueError("auth ambient uses the server's own credentials: drop the access keys, or use "
                             "auth access_key")
        if self.external_id and not self.role_arn:
            raise ValueError("external_id is only used with role_arn")
        if self.auth == "access_key" and not (self.access_key_id and self.secret_access_key):
            raise ValueError("auth access_key needs both access_key_id and secret_access_key")
        if self.auth == "role" and not self.role_arn:
            raise ValueError("auth role needs role_arn")
        if self.role_arn and not re.match(r"^arn:[\w-]+:iam::\d{12}:role/.+$", self.role_arn):
            raise ValueError("role_arn must look like arn:aws:iam::123456789012:role/name")
        if self.session_token and not self.access_key_id:
            raise ValueError("session_token needs access_key_id and secret_access_key")
        return self

    @property
    def bucket_name(self) -> str:
        return self.bucket

    def scope_label(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def server_credentials(self) -> str | None:
        if self.auth == "role" and not self.access_key_id:
            return "auth role without access keys (the role is assumed with the server's own)"
        return super().server_credentials()


class AzureOptions(ProviderOptions):
    provider: ClassVar[Provider] = "azure"
    secret_fields: ClassVar[frozenset[str]] = frozenset({"account_key", "sas_token", "client_secret"})

    account_name: str = Field(description="Storage account name, as in the Azure portal.")
    container: str = Field(description="Blob container name.")
    endpoint_url: str | None = Field(
        None, description="Blob service URL (default https://ACCOUNT.blob.core.windows.net)."
    )
    auth: Literal["account_key", "sas_token", "service_principal", "ambient"] | None = Field(
        None, description="account_key, sas_token, service_principal or ambient "
        "(DefaultAzureCredential). Inferred from the other fields when omitted."
    )
    account_key: SecretStr | None = None
    sas_token: SecretStr | None = None
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    authority_host: str | None = Field(
        None, description="Microsoft Entra authority for service_principal (default "
        "https://login.microsoftonline.com; e.g. https://login.chinacloudapi.cn for Azure China)."
    )

    endpoint_fields: ClassVar[tuple[str, ...]] = ("endpoint_url", "authority_host")
    own_hosts: ClassVar[tuple[str, ...]] = (  # the public, China and US Government clouds
        ".blob.core.windows.net", ".blob.core.chinacloudapi.cn", ".blob.core.usgovcloudapi.net",
    )

    @field_validator("account_name")
    @classmethod
    def _account(cls, v: str) -> str:
        if not _AZURE_ACCOUNT_RE.match(v):
            raise ValueError("storage account names are 3-24 lowercase letters and digits")
        return v

    @field_validator("container")
    @classmethod
    def _container(cls, v: str) -> str:
        if not _AZURE_CONTAINER_RE.match(v):
            raise ValueError("container names are 3-63 lowercase letters, digits and single hyphens")
        return v

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        return _check_endpoint(v)

    @field_validator("authority_host")
    @classmethod
    def _authority(cls, v: str | None) -> str | None:
        v = _check_endpoint(v)
        if v is not None and not v.startswith("https://"):
            raise ValueError("must be an https:// URL, e.g. https://login.microsoftonline.com")
        return v

    @field_validator("sas_token")
    @classmethod
    def _sas(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return v
        text = v.get_secret_value().lstrip("?")
        # The portal shows the "Blob SAS URL" and connection strings beside the token: pasted
        # here, each was put after '?' in every signed URL, which the store then refused.
        if _is_connection_string(text):
            raise ValueError("is a connection string; give only its SharedAccessSignature value "
                             "(sv=…&sig=…)")
        if "://" in text:
            raise ValueError("is a URL (the 'SAS URL'); give only the SAS token, the part after '?' "
                             "(sv=…&sig=…)")
        v = _check_token(SecretStr(text))
        query = {name: values[0] for name, values in parse_qs(text).items()}
        if "sig" not in query:
            raise ValueError("is not a SAS token: it has no signature (sig=…); a SAS token looks like "
                             "sv=…&sp=…&se=…&sig=…")
        # SAS tokens that cannot read the container's blobs: every URL signed with one answers 403.
        if query.get("sr") in ("b", "bs", "bv"):
            raise ValueError(f"is a blob SAS (sr={query['sr']}), which covers one blob; give a container "
                             "SAS (sr=c) or an account SAS")
        if "ss" in query and "b" not in query["ss"]:
            raise ValueError(f"is an account SAS for other services (ss={query['ss']}); it must include "
                             "the Blob service (ss containing b)")
        if "srt" in query and "o" not in query["srt"]:
            raise ValueError(f"is an account SAS without the object resource type (srt={query['srt']}), so "
                             "it cannot read blobs; make one with srt containing o (and c to list)")
        return v

    @field_validator("account_key")
    @classmethod
    def _account_key(cls, v: SecretStr | None) -> SecretStr | None:
        # Azure signs with the base64-decoded key: anything else fails only at first use, as an
        # error that does not name the key (the SDK's "invalid base64" or a 502 from signing).
        if v is not None:
            if _is_connection_string(v.get_secret_value()):
                raise ValueError("is a connection string; give its AccountKey value as account_key (and "
                                 "AccountName as account_name, a BlobEndpoint as endpoint_url)")
            try:
                base64.b64decode(v.get_secret_value(), validate=True)
            except ValueError:
                raise ValueError("must be one of the storage account's access keys: "
                                 "base64 text such as 'Eby8vd…GMGw==' (Azure portal: Security + "
                                 "networking, Access keys)") from None
        return v

    @model_validator(mode="after")
    def _auth(self) -> AzureOptions:
        if self.auth is None:
            if self.account_key:
                self.auth = "account_key"
            elif self.sas_token:
                self.auth = "sas_token"
            elif self.client_secret or self.client_id or self.tenant_id:
                self.auth = "service_principal"
            else:
                self.auth = "ambient"
        needs = {"account_key": ["account_key"], "sas_token": ["sas_token"],
                 "service_principal": ["tenant_id", "client_id", "client_secret"], "ambient": []}
        missing = [f for f in needs[self.auth] if not getattr(self, f)]
        if missing:
            raise ValueError(f"auth {self.auth} needs {', '.join(missing)}")
        if self.auth in ("service_principal", "ambient") and (self.endpoint_url or "").startswith("http://"):
            raise ValueError(f"auth {self.auth} sends bearer tokens, which need an https:// endpoint_url")
        return self

    def max_signed_ttl(self) -> tuple[int, str]:
        if self.auth in ("service_principal", "ambient"):
            return AZURE_DELEGATION_MAX_TTL, (f"{AZURE_DELEGATION_MAX_TTL} s (7 days less 11 minutes): auth "
                                              f"{self.auth} signs with a user delegation key, which lives "
                                              "at most 7 days")
        return super().max_signed_ttl()

    @property
    def bucket_name(self) -> str:
        return self.container

    def scope_label(self) -> str:
        base = self.endpoint_url or f"https://{self.account_name}.blob.core.windows.net"
        return f"{base}/{self.container}/{self.prefix}"


class GcsOptions(ProviderOptions):
    provider: ClassVar[Provider] = "gcs"
    secret_fields: ClassVar[frozenset[str]] = frozenset({"service_account_json"})

    bucket: str = Field(description="Bucket name.")
    project: str | None = Field(None, description="Project id (default: the service account's).")
    endpoint_url: str | None = Field(None, description="API endpoint (default https://storage.googleapis.com).")
    auth: Literal["service_account", "ambient"] | None = Field(
        None, description="service_account (a JSON key) or ambient (Application Default "
        "Credentials). Inferred when omitted."
    )
    service_account_json: SecretStr | None = Field(None, description="The service account's JSON key.")

    endpoint_fields: ClassVar[tuple[str, ...]] = ("endpoint_url",)
    own_hosts: ClassVar[tuple[str, ...]] = (".googleapis.com",)

    def endpoints(self) -> dict[str, str]:
        out = super().endpoints()
        if self.service_account_json is not None:
            token_uri = json.loads(self.service_account_json.get_secret_value()).get("token_uri")
            if isinstance(token_uri, str) and token_uri:
                out["service_account_json.token_uri"] = token_uri
        return out

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not _BUCKET_RE.match(v) or "/" in v:
            raise ValueError("bucket names are letters, digits, '.', '-' or '_' (no '/' or scheme)")
        return v

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        return _check_endpoint(v)

    @field_validator("service_account_json")
    @classmethod
    def _key(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return v
        try:
            info = json.loads(v.get_secret_value())
        except ValueError:
            raise ValueError("service_account_json is not valid JSON") from None
        if not isinstance(info, dict) or info.get("type") != "service_account":
            raise ValueError('service_account_json must be a key file with "type": "service_account"')
        for key in ("client_email", "private_key"):
            if not info.get(key):
                raise ValueError(f"service_account_json has no {key}")
        token_uri = info.get("token_uri")
        if token_uri is not None:
            # The server posts the signed assertion there: an endpoint like endpoint_url.
            if not isinstance(token_uri, str):
                raise ValueError("service_account_json's token_uri must be a string URL")
            try:
                _check_endpoint(token_uri, example="https://oauth2.googleapis.com/token")
            except ValueError as exc:
                raise ValueError(f"service_account_json's token_uri {exc}") from None
        return v

    @model_validator(mode="after")
    def _auth(self) -> GcsOptions:
        if self.auth is None:
            self.auth = "service_account" if self.service_account_json else "ambient"
        if self.auth == "service_account" and not self.service_account_json:
            raise ValueError("auth service_account needs service_account_json")
        return self

    @property
    def client_email(self) -> str | None:
        if self.service_account_json is None:
            return None
        return str(json.loads(self.service_account_json.get_secret_value())["client_email"])

    def public(self) -> dict[str, Any]:
        out = super().public()
        if self.client_email:
            out["client_email"] = self.client_email
        return out

    @classmethod
    def load(cls, config: dict[str, Any], secrets: dict[str, str] | None) -> ProviderOptions:
        config = {k: v for k, v in config.items() if k != "client_email"}
        return super().load(config, secrets)

    @property
    def bucket_name(self) -> str:
        return self.bucket

    def scope_label(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}"


class LocalOptions(ProviderOptions):
    provider: ClassVar[Provider] = "local"

    root: str = Field(description="Absolute path of a directory on the server.")

    @field_validator("root")
    @classmethod
    def _root(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("root must be an absolute path on the server, e.g. /srv/media")
        return v.rstrip("/") or "/"

    @property
    def bucket_name(self) -> str:
        return ""

    def scope_label(self) -> str:
        return f"file://{self.root}/{self.prefix}"


OPTIONS: dict[str, type[ProviderOptions]] = {
    "s3": S3Options, "azure": AzureOptions, "gcs": GcsOptions, "local": LocalOptions,
}

AnyOptions = Annotated[S3Options | AzureOptions | GcsOptions | LocalOptions, "provider options"]
