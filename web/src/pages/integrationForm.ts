// Which fields each provider's tab shows, and how they become the API's `settings`.
// Kept free of React so the rules are unit-tested.

export type Provider = "s3" | "azure" | "gcs" | "local";

export interface FieldSpec {
  name: string;
  label: string;
  hint?: string;
  secret?: boolean;
  required?: boolean;
  multiline?: boolean;
  placeholder?: string;
}

export interface AuthSpec {
  value: string;
  label: string;
  fields: FieldSpec[];
}

export interface ProviderSpec {
  provider: Provider;
  tab: string;
  fields: FieldSpec[]; // always shown
  auths: AuthSpec[]; // the authentication-method dropdown ([] = none)
}

const prefix: FieldSpec = { name: "prefix", label: "Prefix", hint: "Only keys starting with it belong to the integration. Empty: the whole bucket." };

export const PROVIDERS: ProviderSpec[] = [
  {
    provider: "s3",
    tab: "AWS S3",
    fields: [
      { name: "bucket", label: "Bucket", required: true, placeholder: "acme-media" },
      prefix,
      { name: "region", label: "Region", placeholder: "eu-west-1" },
      { name: "endpoint_url", label: "Endpoint URL (S3-compatible stores)", hint: "MinIO, R2, Wasabi…: the store's https:// URL. Leave empty for AWS.", placeholder: "https://minio.example.internal:9000" },
    ],
    auths: [
      { value: "access_key", label: "Access key", fields: [
        { name: "access_key_id", label: "Access key id", secret: true, required: true },
        { name: "secret_access_key", label: "Secret access key", secret: true, required: true },
        { name: "session_token", label: "Session token (temporary keys)", secret: true },
      ] },
      { value: "role", label: "IAM role (AssumeRole)", fields: [
        { name: "role_arn", label: "Role ARN", required: true, placeholder: "arn:aws:iam::123456789012:role/corral" },
        { name: "external_id", label: "External id", secret: true },
      ] },
      { value: "ambient", label: "The server's own credentials", fields: [] },
    ],
  },
  {
    provider: "azure",
    tab: "Azure",
    fields: [
      { name: "account_name", label: "Storage account name", required: true, hint: "As shown in the Azure portal: 3–24 lowercase letters and digits." },
      { name: "container", label: "Container", required: true },
      prefix,
      { name: "endpoint_url", label: "Blob endpoint URL", hint: "Default https://ACCOUNT.blob.core.windows.net. Set it for sovereign clouds and emulators." },
    ],
    auths: [
      { value: "account_key", label: "Account key", fields: [
        { name: "account_key", label: "Account key", secret: true, required: true },
      ] },
      { value: "sas_token", label: "SAS token", fields: [
        { name: "sas_token", label: "SAS token", secret: true, required: true, hint: "An account or container shared access signature." },
      ] },
      { value: "service_principal", label: "Service principal", fields: [
        { name: "tenant_id", label: "Directory (tenant) id", required: true },
        { name: "client_id", label: "Application (client) id", required: true },
        { name: "client_secret", label: "Client secret", secret: true, required: true },
      ] },
      { value: "ambient", label: "Ambient identity (managed identity, environment)", fields: [] },
    ],
  },
  {
    provider: "gcs",
    tab: "GCS",
    fields: [
      { name: "bucket", label: "Bucket", required: true },
      prefix,
      { name: "project", label: "Project id" },
      { name: "endpoint_url", label: "API endpoint URL", hint: "Default https://storage.googleapis.com." },
    ],
    auths: [
      { value: "service_account", label: "Service-account key", fields: [
        { name: "service_account_json", label: "Service-account JSON key", secret: true, required: true, multiline: true },
      ] },
      { value: "ambient", label: "The server's Application Default Credentials", fields: [] },
    ],
  },
  {
    provider: "local",
    tab: "Local",
    fields: [{ name: "root", label: "Directory on the server", required: true, placeholder: "/srv/media" }, prefix],
    auths: [],
  },
];

export function specFor(provider: Provider): ProviderSpec {
  const spec = PROVIDERS.find((p) => p.provider === provider);
  if (!spec) throw new Error(`unknown provider ${provider}`);
  return spec;
}

/** The `settings` object for the API: the tab's fields and the chosen auth method's, trimmed,
 * empty ones left out (so the API applies its defaults); `auth` names the method. */
export function buildSettings(provider: Provider, auth: string, values: Record<string, string>): Record<string, string> {
  const spec = specFor(provider);
  const names = [...spec.fields, ...(spec.auths.find((a) => a.value === auth)?.fields ?? [])].map((f) => f.name);
  const out: Record<string, string> = {};
  for (const name of names) {
    const raw = values[name] ?? "";
    const v = name === "service_account_json" ? raw : raw.trim();
    if (v !== "") out[name] = v;
  }
  if (spec.auths.length > 0 && auth) out.auth = auth;
  return out;
}
