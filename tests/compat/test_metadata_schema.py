"""The metadata schema through the unmodified Encord SDK: every edit method and save(), the
SDK's errors, and the legacy schema calls, against a live server (checked through the native
API too)."""

from __future__ import annotations

import httpx
import pytest

URL = "/api/v1/metadata-schema"


@pytest.fixture
def schema_sdk(live_server, make_user):  # type: ignore[no-untyped-def]
    from encord import EncordUserClient

    alice = make_user("alice@x.io")
    client = EncordUserClient.create_with_ssh_private_key(alice.key_path.read_text(), domain=live_server)
    return client, alice, live_server


def test_sdk_schema_workflow(schema_sdk) -> None:  # type: ignore[no-untyped-def]
    from encord.metadata_schema import MetadataSchemaError

    client, alice, server = schema_sdk
    schema = client.metadata_schema()
    schema.add_scalar("captured_at", data_type="datetime")
    schema.add_scalar("camera", data_type="string")
    schema.add_scalar("notes", data_type="long_string")
    schema.add_scalar("video.description", data_type="text")
    schema.add_enum("weather", values=["sunny", "rain"])
    schema.add_enum_options("weather", values=["snow"])
    schema.add_embedding("clip", size=512)
    schema.add_scalar("to_soft", data_type="varchar")
    schema.add_scalar("to_hard", data_type="number")
    schema.save()

    again = client.metadata_schema()
    assert again.get_key_type("camera") == "varchar" and again.get_key_type("notes") == "text"
    assert again.get_key_type("weather") == "enum" and again.get_key_type("clip") == "embedding"
    again.delete_key("to_soft")
    again.delete_key("to_hard", hard=True)
    again.set_scalar("camera", data_type="text")
    again.save()

    native = httpx.get(f"{server}{URL}", headers=alice.bearer).json()
    assert native["version"] == 2
    keys = native["schema"]["keys"]
    assert keys["to_soft"] == {"type": "varchar", "deleted": "soft"} and keys["to_hard"] == {"deleted": "hard"}
    assert keys["camera"] == {"type": "text"}
    history = httpx.get(f"{server}{URL}/versions", headers=alice.bearer).json()
    assert history[0]["diff"]["retyped"] == [{"key": "camera", "from": "varchar", "to": "text"}]

    third = client.metadata_schema()
    third.restore_key("to_soft")
    third.save()
    assert httpx.get(f"{server}{URL}", headers=alice.bearer).json()["schema"]["keys"]["to_soft"] == {"type": "varchar"}
    with pytest.raises(MetadataSchemaError):
        client.metadata_schema().restore_key("to_hard")  # the SDK itself refuses


def test_sdk_errors_and_extensions(schema_sdk) -> None:  # type: ignore[no-untyped-def]
    from encord.exceptions import InvalidArgumentsError

    client, alice, server = schema_sdk
    native = {"strict_metadata": True, "keys": {"camera": {"type": "varchar", "required": True},
                                                "weather": {"type": "enum", "values": ["rain", "snow"]}}}
    assert httpx.put(f"{server}{URL}", json=native, headers=alice.bearer).status_code == 200

    schema = client.metadata_schema()
    schema.add_scalar("notes", data_type="text")
    schema.save()
    keys = httpx.get(f"{server}{URL}", headers=alice.bearer).json()["schema"]
    assert keys["strict_metadata"] is True and keys["keys"]["camera"]["required"] is True  # kept

    # A save that drops an enum option is refused with the server's message (the SDK raises).
    from encord.metadata_schema import _ClientMetadataSchema  # the SDK has no remove-option call

    bad = {"weather": {"ty": "enum", "values": ["rain"]}, "camera": {"ty": "variant", "hint": "varchar"},
           "notes": {"ty": "variant", "hint": "text"}}
    with pytest.raises(InvalidArgumentsError, match="would lose option"):
        client._api_client.post("organisation/client-metadata-schema-v2", params=None,
                                 payload=_ClientMetadataSchema.model_validate(bad), result_type=None)


@pytest.mark.filterwarnings("ignore:.*is deprecated since version:DeprecationWarning")
def test_sdk_legacy_calls(schema_sdk) -> None:  # type: ignore[no-untyped-def]
    client, alice, server = schema_sdk
    assert client.get_client_metadata_schema() is None
    client.set_client_metadata_schema_from_dict({"captured_at": "datetime", "camera": "string", "n": "number"})
    legacy = client.get_client_metadata_schema()
    assert {k: str(getattr(v, "value", v)) for k, v in legacy.items()} == {
        "camera": "string", "captured_at": "datetime", "n": "number"}
    keys = httpx.get(f"{server}{URL}", headers=alice.bearer).json()["schema"]["keys"]
    assert keys["camera"] == {"type": "varchar"}
    client.set_client_metadata_schema_from_dict({"captured_at": "datetime"})
    keys = httpx.get(f"{server}{URL}", headers=alice.bearer).json()["schema"]["keys"]
    assert keys["camera"] == {"type": "varchar", "deleted": "soft"}  # left out: soft-deleted, not lost




def test_sdk_key_added_and_deleted_before_save(schema_sdk) -> None:  # type: ignore[no-untyped-def]
    """Issue 19: the SDK sends a tombstone for a key the server never saw."""
    client, alice, server = schema_sdk
    schema = client.metadata_schema()
    schema.add_scalar("kept", data_type="varchar")
    schema.add_scalar("brief", data_type="number")
    schema.delete_key("brief")  # soft, never saved live
    schema.add_enum("gone", values=["a", "b"])
    schema.delete_key("gone", hard=True)
    schema.save()

    keys = httpx.get(f"{server}{URL}", headers=alice.bearer).json()["schema"]["keys"]
    assert keys == {"kept": {"type": "varchar"}, "brief": {"type": "number", "deleted": "soft"},
                    "gone": {"deleted": "hard"}}
    history = httpx.get(f"{server}{URL}/versions", headers=alice.bearer).json()
    assert {d["key"]: d["hard"] for d in history[0]["diff"]["deleted"]} == {"brief": False, "gone": True}

    again = client.metadata_schema()
    assert again.is_key_deleted("brief") and again.is_key_deleted("gone")
    again.restore_key("brief")  # the tombstone remembers the definition it was sent with
    again.save()
    keys = httpx.get(f"{server}{URL}", headers=alice.bearer).json()["schema"]["keys"]
    assert keys["brief"] == {"type": "number"}
    assert client.metadata_schema().get_key_type("brief") == "number"


def test_sdk_save_keeps_an_embedding_endpoint(schema_sdk) -> None:  # type: ignore[no-untyped-def]
    client, alice, server = schema_sdk
    api = {"url": "https://embed.example.com", "path": "/v1/embed", "embed_text": True,
           "embed_b64_image": False, "timeout": 2.5}
    r = httpx.put(f"{server}{URL}", headers=alice.bearer,
                  json={"keys": {"clip": {"type": "embedding", "size": 8, "api": api, "metric": "dot"}}})
    assert r.status_code == 200, r.text
    schema = client.metadata_schema()
    assert "clip" in schema.keys()  # the SDK parses the endpoint in its own model
    schema.add_scalar("camera", data_type="varchar")
    schema.save()  # re-sends clip with its api, which has no timeout
    keys = httpx.get(f"{server}{URL}", headers=alice.bearer).json()["schema"]["keys"]
    assert keys["clip"]["api"] == api and keys["camera"] == {"type": "varchar"}
    assert keys["clip"]["metric"] == "dot"  # which the SDK's form cannot carry either: kept
    encord = httpx.get(f"{server}/v2/public/organisation/client-metadata-schema-v2", headers=alice.bearer)
    assert encord.json()["clip"]["api"] == {"url": "https://embed.example.com", "path": "/v1/embed",
                                            "service_integration": None, "client_only": False,
                                            "embed_b64_image": False, "embed_text": True}
