import { describe, expect, it } from "vitest";
import { buildSettings, specFor } from "./integrationForm";

describe("buildSettings", () => {
  it("keeps only the chosen auth method's fields", () => {
    const values = { account_name: " acct ", container: "media", account_key: "k==", sas_token: "sv=x", prefix: "" };
    expect(buildSettings("azure", "account_key", values)).toEqual({
      account_name: "acct", container: "media", account_key: "k==", auth: "account_key",
    });
    expect(buildSettings("azure", "sas_token", values)).toEqual({
      account_name: "acct", container: "media", sas_token: "sv=x", auth: "sas_token",
    });
  });

  it("sends no credentials for ambient identity", () => {
    expect(buildSettings("azure", "ambient", { account_name: "a", container: "c", account_key: "k" })).toEqual({
      account_name: "a", container: "c", auth: "ambient",
    });
  });

  it("has no auth for a local directory", () => {
    expect(buildSettings("local", "", { root: "/srv/media" })).toEqual({ root: "/srv/media" });
  });

  it("offers the four Azure methods of the reference workflow", () => {
    expect(specFor("azure").auths.map((a) => a.value)).toEqual(["account_key", "sas_token", "service_principal", "ambient"]);
  });
});
