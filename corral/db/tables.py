"""Table definitions.  Every org-owned row carries ``org_id`` so that scoping is one
``WHERE`` away and a missing filter is easy to spot in review.

Identifiers are UUIDs (they travel to the Encord SDK as ``*Hash``/``uuid`` fields);
job units use an integer key because workers claim them in key order.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy import false as sa_false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from corral.db.types import JSONType, UTCDateTime, utcnow, uuid7

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType}


def _uuid() -> uuid.UUID:
    return uuid7()


def _id() -> Mapped[uuid.UUID]:
    return mapped_column(Uuid, primary_key=True, default=_uuid)


def _org() -> Mapped[uuid.UUID]:
    return mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"), index=True)


def _created() -> Mapped[datetime]:
    return mapped_column(default=utcnow)


def _updated() -> Mapped[datetime]:
    return mapped_column(default=utcnow, onupdate=utcnow)


def _creator() -> Mapped[uuid.UUID | None]:
    return mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)


# -- identity ---------------------------------------------------------------


class Organisation(Base):
    __tablename__ = "organisations"
    id: Mapped[uuid.UUID] = _id()
    name: Mapped[str] = mapped_column(String(200), unique=True)
    strict_metadata: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = _created()


class User(Base):
    __tablename__ = "users"
    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org()
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # "admin" | "member"
    created_at: Mapped[datetime] = _created()
    disabled_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # "scrypt$n$r$p$salt$hash" (corral.core.sessions); None: the user cannot sign in with a password
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)


class SshKey(Base):
    __tablename__ = "ssh_keys"
    id: Mapped[uuid.UUID] = _id()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    key_id: Mapped[str] = mapped_column(String(64), unique=True)  # hex of the raw Ed25519 key
    public_key: Mapped[str] = mapped_column(Text)  # the OpenSSH line as registered
    comment: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = _created()


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[uuid.UUID] = _id()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings, not secret
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = _created()
    last_used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class WebSession(Base):
    """A browser's sign-in: the cookie's token and the CSRF token are stored as sha256 hashes."""

    __tablename__ = "web_sessions"
    id: Mapped[uuid.UUID] = _id()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_hash: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(16))  # "password" | "token"
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = _created()
    last_seen_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


# -- integrations -----------------------------------------------------------


class Integration(Base):
    __tablename__ = "integrations"
    __table_args__ = (UniqueConstraint("org_id", "title"),)
    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org()
    title: Mapped[str] = mapped_column(String(300))
    provider: Mapped[str] = mapped_column(String(32))  # s3 | azure | gcs | local
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)  # non-secret settings
    credentials: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # encrypted
    signed_url_ttl_seconds: Mapped[int] = mapped_column(Integer, default=3600)
    strict_client_only: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[uuid.UUID | None] = _creator()
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


# -- files ------------------------------------------------------------------


class Folder(Base):
    __tablename__ = "folders"
    # parent_key is the parent's id as text, or "" at the top, so the sibling-name rule
    # is one unique constraint on both databases (NULLs never collide in UNIQUE).
    __table_args__ = (UniqueConstraint("org_id", "parent_key", "name"),)
    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org()
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("folders.id", ondelete="RESTRICT"), nullable=True, index=True
    )
    parent_key: Mapped[str] = mapped_column(String(36), default="")
    name: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    client_metadata: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[uuid.UUID | None] = _creator()
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()
    # "generic", or "cloud_linked": a folder whose items a sync of ``remote_url`` (a prefix in the
    # bucket of ``integration_id``) owns (corral/core/cloudsync.py, migration 0029h).
    kind: Mapped[str] = mapped_column(String(16), default="generic", server_default="generic")
    integration_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)
    remote_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The folder config document (the SDK's StorageFolderConfig), kept as sent.
    config: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    last_synced_at: Mapped[datetime | None] = mapped_column(nullable=True)


#: The condition of ``ix_items_hidden`` (queries that use the index repeat it word for word).
ITEMS_HIDDEN = "deleted_at IS NOT NULL OR (staged AND job_id IS NULL)"


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (
        # duplicate checks (registration's skip_duplicate_urls) read this index alone
        Index("ix_items_url_folder", "url_hash", "folder_id", "deleted_at", "staged", "job_id"),
        # keyset pagination of a folder's items in each supported order (by name:
        # ix_items_folder_name_live, below)
        Index("ix_items_folder_created", "folder_id", "created_at", "id"),
        Index("ix_items_folder_size", "folder_id", "file_size", "id"),
        # a folder's visible items (published, not deleted) on the index alone, for counting
        # them and for finding the item at a position by name (the web UI's item window)
        Index("ix_items_folder_name_live", "folder_id", "name", "id", "staged", "deleted_at", "job_id"),
        # the few items users cannot see for a reason other than a pending job (deleted, or
        # staged by a job since deleted): index counts take them away (corral/core/index/query.py)
        Index("ix_items_hidden", "org_id", "id", sqlite_where=text(ITEMS_HIDDEN),
              postgresql_where=text(ITEMS_HIDDEN)),
        # the items whose listing document is missing, for the workers' refill (item_docs.refill)
        Index("ix_items_doc_missing", "id", sqlite_where=text("doc IS NULL"),
              postgresql_where=text("doc IS NULL")),
    )
    id: Mapped[uuid.UUID] = _id()
    # The five references below (org_id, folder_id, integration_id, job_id, created_by) are not
    # foreign keys: a foreign key checked every inserted row against its parent (on PostgreSQL a
    # trigger and a locking read per row and constraint).  Whatever inserts items checks and
    # locks the parents once, in its transaction (corral.core.item_parents.hold), and triggers do
    # what the constraints did when a parent is deleted (migration 0025b): the organisation's
    # items are deleted with it, a folder or an integration holding items cannot be deleted (the
    # same error), and a deleted job or user leaves job_id / created_by NULL.
    org_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    # no index of its own: the composite indexes above but the URL key's start with it
    folder_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    integration_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)
    item_type: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="", server_default="")
    url: Mapped[str | None] = mapped_column(Text, nullable=True)  # None for multi-part items
    # Duplicate detection: the URL(s) themselves, or a prefix and a hash when long (files.url_key).
    # Not a bare hash: keys from a sorted manifest then land next to each other in the index.
    url_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    storage_location: Mapped[str] = mapped_column(String(32))
    file_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    mime_type: Mapped[str | None] = mapped_column(String(200), nullable=True)
    media: Mapped[dict[str, Any]] = mapped_column(default=dict)  # width, height, fps, duration, …
    client_metadata: Mapped[dict[str, Any]] = mapped_column(default=dict)
    is_placeholder: Mapped[bool] = mapped_column(Boolean, default=False)
    # Registered by a job that must succeed as a whole: invisible until the job is DONE, and
    # deleted if it fails (so nothing half-registered stays behind).
    staged: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()
    deleted_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Cloud-synced folders (corral/core/cloudsync.py): set while the item's object is gone from
    # the bucket (a tombstone: still listed, not signed); the object's version as the last sync
    # listed it (etag, size, modification time).  ``seen_by`` is no longer written (migration
    # 0030s: what a sync lists is in ``cloud_sync_seen``).
    tombstoned_at: Mapped[datetime | None] = mapped_column(nullable=True)
    remote_version: Mapped[str | None] = mapped_column(String(400), nullable=True)
    seen_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    # The item as a listing answers it (``ItemPublic``'s JSON), or NULL: written with the row by
    # registration, cleared by a trigger when a listed column changes (corral/core/item_docs.py).
    doc: Mapped[str | None] = mapped_column(Text, nullable=True, deferred=True)


class ItemPart(Base):
    """One file of a multi-file item (image group / sequence frame, DICOM instance)."""

    __tablename__ = "item_parts"
    __table_args__ = (UniqueConstraint("item_id", "position"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    item_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(String(300), default="")
    media: Mapped[dict[str, Any]] = mapped_column(default=dict)


class JobBlob(Base):
    """An uploaded manifest, in chunks, so any worker on any host can read it."""

    __tablename__ = "job_blobs"
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


# -- metadata schema --------------------------------------------------------


class MetadataSchema(Base):
    """The current schema of an organisation (one row per org)."""

    __tablename__ = "metadata_schemas"
    org_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column()
    updated_by: Mapped[uuid.UUID | None] = _creator()
    updated_at: Mapped[datetime] = _updated()


class MetadataSchemaVersion(Base):
    __tablename__ = "metadata_schema_versions"
    __table_args__ = (UniqueConstraint("org_id", "version"),)
    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org()
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column()
    diff: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[uuid.UUID | None] = _creator()
    created_at: Mapped[datetime] = _created()


# -- the index: typed projections of metadata ---------------------------------

#: Text keys are compared in code-point order on both databases (PostgreSQL's "C" collation).
IndexText = String(255).with_variant(String(255, collation="C"), "postgresql")


class IndexKey(Base):
    """A scalar key of an organisation's metadata schema, as the index knows it.

    A key's projection belongs to one definition: re-typing the key gives it a new row (a new
    ``id``), so no projected value of the old type is ever read as the new one.  ``ready`` is
    false while a re-projection job (``job_id``) fills the new row's values.
    """

    __tablename__ = "index_keys"
    __table_args__ = (UniqueConstraint("org_id", "name"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(256))
    definition: Mapped[dict[str, Any]] = mapped_column()  # the native schema entry it projects
    ready: Mapped[bool] = mapped_column(Boolean, default=False)
    job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    created_at: Mapped[datetime] = _created()


class IndexSeq(Base):
    """An organisation's index change sequence: bumped, in the writing transaction, by every
    write that changes the items or their projected values (``corral.core.index.changes``), so
    an API process's columnar snapshot knows exactly when it is behind."""

    __tablename__ = "index_seqs"
    org_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger, default=0)


class IndexSnapshotFile(Base):
    """The index snapshot file an API process last saved for an organisation
    (``corral.core.index.persist``): a file is used only if its random ``token`` and ``seq`` are
    the ones recorded here, so a file of another database, or of a history this database no longer
    has (a backup restored from before the save), is never read as this one's."""

    __tablename__ = "index_snapshot_files"
    org_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger)
    token: Mapped[str] = mapped_column(String(32))


class IndexChange(Base):
    """The items a change ``seq`` touched (``item_id`` null: every item of the organisation)."""

    __tablename__ = "index_changes"
    __table_args__ = (Index("ix_index_changes_org_seq", "org_id", "seq"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    # Not a foreign key: it checked every logged row (a locking read per row on PostgreSQL).  The
    # only writer (corral.core.index.changes._bump) reads the organisation FOR KEY SHARE once a
    # commit, and a trigger deletes an organisation's rows with it (migration 0027a).
    org_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    seq: Mapped[int] = mapped_column(BigInteger)
    item_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)


class ItemMeta(Base):
    """One item's value of one index key: ``num`` for number, datetime (Unix seconds) and
    boolean (0/1); ``txt`` (its first 255 characters) for the string kinds."""

    __tablename__ = "item_meta"
    # Partial indexes: a value enters one of them, not both.  On SQLite the table is its
    # primary key (WITHOUT ROWID), so a value costs two B-tree entries in all.
    __table_args__ = (
        Index("ix_item_meta_num", "key_id", "num", "item_id", sqlite_where=text("num IS NOT NULL"),
              postgresql_where=text("num IS NOT NULL")),
        Index("ix_item_meta_txt", "key_id", "txt", "item_id", sqlite_where=text("txt IS NOT NULL"),
              postgresql_where=text("txt IS NOT NULL")),
        # on PostgreSQL the primary key carries the values, so an item's values (what facets read)
        # are one index-only range; on SQLite the table is its primary key (migration 0022i)
        PrimaryKeyConstraint("item_id", "key_id", name="pk_item_meta", postgresql_include=["num", "txt"]),
        {"sqlite_with_rowid": False},
    )
    # No foreign keys: deleting an item or a key deletes its values by trigger (migration 0023y),
    # and values are only written for items and keys that exist, so a check per inserted value
    # (most of the projection's cost in registration) bought nothing.
    item_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    key_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    num: Mapped[float | None] = mapped_column(Float, nullable=True)
    txt: Mapped[str | None] = mapped_column(IndexText, nullable=True)


class VectorKey(Base):
    """An embedding key of an organisation's metadata schema, as the vector store knows it.

    Vectors belong to one definition (``dim``): changing the key's size, or deleting the key,
    deletes this row and its vectors by cascade.  ``metric`` (cosine, dot or l2) may change
    without losing vectors; the approximate index is then rebuilt.  ``indexed_upto`` is the
    highest ``item_vectors.id`` the approximate index holds: newer vectors are searched exactly
    until the ``vector_index`` job (``index_job_id``) adds them.
    """

    __tablename__ = "vector_keys"
    __table_args__ = (UniqueConstraint("org_id", "name"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    org_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(256))
    dim: Mapped[int] = mapped_column(Integer)
    metric: Mapped[str] = mapped_column(String(16), default="cosine")
    indexed_upto: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    indexed_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    index_metric: Mapped[str | None] = mapped_column(String(16), nullable=True)
    index_file: Mapped[str | None] = mapped_column(String(300), nullable=True)
    index_job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    created_at: Mapped[datetime] = _created()


class ItemVector(Base):
    """One item's vector of one embedding key: little-endian float32, ``dim`` of them.

    ``id`` only grows (AUTOINCREMENT on SQLite, a sequence on PostgreSQL), so it is the label an
    approximate index stores: a replaced vector gets a new id, and a label whose row is gone is
    simply not found.
    """

    __tablename__ = "item_vectors"
    __table_args__ = (
        UniqueConstraint("key_id", "item_id"),
        Index("ix_item_vectors_key_id_id", "key_id", "id"),
        {"sqlite_autoincrement": True},
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("vector_keys.id", ondelete="CASCADE"))
    item_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    vec: Mapped[bytes] = mapped_column(LargeBinary)


class VectorMap(Base):
    """One 2-D map of an embedding key (``corral.core.maps``): the fitted projection and its bounds.

    Each build makes a new row; its points are written under its id, and the build's commit makes
    it the key's ``current`` map and deletes the previous one (its points go by cascade).  Deleting
    the key (or changing its size) deletes its maps.  ``mapped_upto`` is the highest
    ``item_vectors.id`` the map has seen: newer vectors are "not yet mapped" until an incremental
    build projects them with the stored model.
    """

    __tablename__ = "vector_maps"
    __table_args__ = (Index("ix_vector_maps_key_id", "key_id", "current"), {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("vector_keys.id", ondelete="CASCADE"))
    current: Mapped[bool] = mapped_column(Boolean, default=False)
    method: Mapped[str] = mapped_column(String(16))
    #: the build's parameters, the fitted model's bounds (x0, y0, x1, y1) and counts
    info: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    #: the fitted projection (``corral.core.maps.projection.dumps``), read only to map new vectors
    model: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, deferred=True)
    mapped_upto: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    points: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    created_at: Mapped[datetime] = _created()
    built_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class MapPoint(Base):
    """An item's place on a map: ``x`` and ``y`` quantised to 0..65535 (the map's grid, the same
    numbers the points endpoint sends and a lasso filter's polygon is drawn in).  The point goes
    with the vector it was projected from (a replaced vector has a new id, so its old point
    goes), and so with the item and the key."""

    __tablename__ = "map_points"
    __table_args__ = (Index("ix_map_points_map_xy", "map_id", "x", "y", "item_id"),)  # covering
    vector_id: Mapped[int] = mapped_column(
        ForeignKey("item_vectors.id", ondelete="CASCADE"), primary_key=True
    )
    map_id: Mapped[int] = mapped_column(ForeignKey("vector_maps.id", ondelete="CASCADE"), primary_key=True)
    item_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    x: Mapped[int] = mapped_column(Integer)
    y: Mapped[int] = mapped_column(Integer)


class ItemText(Base):
    """The whole value of a text key, or of a string longer than ``item_meta.txt`` keeps: what
    full-text search (SQLite FTS5 ``item_text_fts``, PostgreSQL ``to_tsvector``) and substring
    matches read."""

    __tablename__ = "item_text"
    __table_args__ = (UniqueConstraint("item_id", "key_id"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    item_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    key_id: Mapped[int] = mapped_column(ForeignKey("index_keys.id", ondelete="CASCADE"), index=True)
    body: Mapped[str] = mapped_column(Text)


# -- jobs -------------------------------------------------------------------


class IndexPreset(Base):
    """A saved filter of the index (the SDK's filter preset).

    ``filter`` is corral's filter tree (native presets); ``document`` the Encord preset JSON
    exactly as the SDK sent it (its text, so it round-trips byte for byte).  One of them is set.
    ``request_key`` makes a retried create answer the preset the first attempt made.
    ``project_id``: a project's preset (the SDK's ProjectFilterPreset), seen through the project
    alone; None: the organisation's Index preset.
    """

    __tablename__ = "index_presets"
    __table_args__ = (UniqueConstraint("org_id", "request_key"),)
    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org()
    project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=True, index=True
    )
    name: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    filter: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    document: Mapped[str | None] = mapped_column(Text, nullable=True)
    request_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_by: Mapped[uuid.UUID | None] = _creator()
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class Collection(Base):
    """A named set of items of the index (the SDK's Index collection).

    ``folder_id`` is its top-level folder (the SDK's ``topLevelFolderUuid``): only that folder's
    items may join it, and only those who can see the folder see it.  None: any item.
    ``project_id``: a project's collection (the SDK's ProjectCollection, of ``collection_type``
    FRAME or LABEL), whose members are ``ProjectCollectionItem`` rows, not items.
    """

    __tablename__ = "collections"
    __table_args__ = (UniqueConstraint("org_id", "request_key"),)
    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org()
    project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=True, index=True
    )
    collection_type: Mapped[str | None] = mapped_column(String(8), nullable=True)  # FRAME | LABEL
    folder_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("folders.id", ondelete="CASCADE"), nullable=True, index=True
    )
    name: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    request_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_by: Mapped[uuid.UUID | None] = _creator()
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class CollectionItem(Base):
    __tablename__ = "collection_items"
    collection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True
    )
    # indexed on its own: "which collections hold this item" (in_collection probes, deletes)
    item_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = _created()


class ProjectCollectionItem(Base):
    """A frame of a project's data unit (FRAME collections), or an annotation (object or
    classification hash) on one (LABEL collections: ``annotation_id`` not empty)."""

    __tablename__ = "project_collection_items"
    collection_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True
    )
    data_row_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("data_rows.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    frame: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    annotation_id: Mapped[str] = mapped_column(String(100), primary_key=True, default="")
    created_at: Mapped[datetime] = _created()


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org()
    kind: Mapped[str] = mapped_column(String(64))
    # PENDING while units remain; DONE / ERROR / CANCELLED once finalised.
    status: Mapped[str] = mapped_column(String(16), default="PENDING", index=True)
    target_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True, index=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    ignore_errors: Mapped[bool] = mapped_column(Boolean, default=False)
    units_total: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[uuid.UUID | None] = _creator()
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


class JobUnit(Base):
    __tablename__ = "job_units"
    __table_args__ = (
        Index("ix_job_units_claim", "status", "available_at"),
        Index("ix_job_units_job_status", "job_id", "status"),
        UniqueConstraint("job_id", "seq"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    # pending → running → done | error | cancelled (running → pending on lease loss)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    available_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class CloudSyncSeen(Base):
    """An item a cloud sync's scan found listed (corral/core/cloudsync.py): written with the scan
    page that found it, read by the end of the sync to find what is gone, then deleted."""

    __tablename__ = "cloud_sync_seen"
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    item_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)


class JobWorker(Base):
    """A running worker (a `corral worker` process or `corral serve`'s worker thread): who may
    hold leases, and how to tell that it is gone before its leases run out.

    ``host_id`` names the machine and process namespace the ``pid`` belongs to; ``started`` is
    the process's start time as the kernel reports it, so a reused pid is not taken for the
    worker.  ``heartbeat_at`` is refreshed every few seconds while the worker runs.
    """

    __tablename__ = "job_workers"
    owner: Mapped[str] = mapped_column(String(100), primary_key=True)
    host_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pid: Mapped[int] = mapped_column(Integer)
    started: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    heartbeat_at: Mapped[datetime] = mapped_column()


# -- datasets, ontologies, projects, labels ---------------------------------


class Dataset(Base):
    __tablename__ = "datasets"
    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org()
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    backing_folder_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("folders.id", ondelete="SET NULL"), nullable=True
    )
    created_by: Mapped[uuid.UUID | None] = _creator()
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class DataRow(Base):
    """An item linked into a dataset (the SDK's data unit, ``data_hash``)."""

    __tablename__ = "data_rows"
    # An item is linked into a dataset at most once (linking again is skipped or refused).
    __table_args__ = (UniqueConstraint("dataset_id", "item_id"),)
    id: Mapped[uuid.UUID] = _id()
    dataset_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    item_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("items.id", ondelete="RESTRICT"), index=True
    )
    created_at: Mapped[datetime] = _created()


class Grant(Base):
    """A member's role on a folder (inherited by its subfolders) or a dataset.

    Admins need no grants; a resource's creator is its editor without one.
    """

    __tablename__ = "grants"
    __table_args__ = (
        UniqueConstraint("resource_type", "resource_id", "user_id"),
        Index("ix_grants_user", "user_id", "resource_type"),
    )
    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org()
    resource_type: Mapped[str] = mapped_column(String(16))  # "folder" | "dataset" | "project"
    resource_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # folders and datasets: "viewer" | "editor"; projects also the SDK's project roles
    # ("admin", "team_manager", "annotator", "reviewer", "annotator_reviewer")
    role: Mapped[str] = mapped_column(String(32))
    created_by: Mapped[uuid.UUID | None] = _creator()
    created_at: Mapped[datetime] = _created()


class Ontology(Base):
    __tablename__ = "ontologies"
    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org()
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    editor: Mapped[dict[str, Any]] = mapped_column()
    created_by: Mapped[uuid.UUID | None] = _creator()
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org()
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    ontology_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("ontologies.id", ondelete="RESTRICT"), nullable=True
    )
    project_type: Mapped[str] = mapped_column(String(32), default="manual_qa")
    status: Mapped[str] = mapped_column(String(32), default="notStarted")
    created_by: Mapped[uuid.UUID | None] = _creator()
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class OrganisationTag(Base):
    """A tag of the organisation (the Encord SDK's ``OrganisationTag``), attached to projects and
    folders; its name is unique in the organisation."""

    __tablename__ = "organisation_tags"
    __table_args__ = (UniqueConstraint("org_id", "name"),)
    id: Mapped[uuid.UUID] = _id()
    org_id: Mapped[uuid.UUID] = _org()
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[uuid.UUID | None] = _creator()
    created_at: Mapped[datetime] = _created()


class ProjectTag(Base):
    __tablename__ = "project_tags"
    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisation_tags.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class FolderTag(Base):
    __tablename__ = "folder_tags"
    folder_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("folders.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("organisation_tags.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class ProjectDataset(Base):
    __tablename__ = "project_datasets"
    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    # indexed on its own: "which projects use this dataset" (deleting a dataset) reads it alone
    dataset_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("datasets.id", ondelete="RESTRICT"), primary_key=True, index=True
    )


class LabelRow(Base):
    __tablename__ = "label_rows"
    __table_args__ = (UniqueConstraint("project_id", "data_row_id", "branch_name"),)
    id: Mapped[uuid.UUID] = _id()  # label_hash
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    data_row_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("data_rows.id", ondelete="CASCADE"), index=True
    )
    branch_name: Mapped[str] = mapped_column(String(100), default="main")
    label_status: Mapped[str] = mapped_column(String(32), default="LABEL_IN_PROGRESS")
    document: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_by: Mapped[uuid.UUID | None] = _creator()
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class WorkflowTask(Base):
    """Where one data unit of a project is in the project's workflow (annotate, review, complete).

    A data unit without a row is a new task in the first stage; the row appears with its first
    action.  Its id is the task's ``uuid`` in the SDK.
    """

    __tablename__ = "workflow_tasks"
    __table_args__ = (UniqueConstraint("project_id", "data_row_id"),)
    id: Mapped[uuid.UUID] = _id()
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    data_row_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("data_rows.id", ondelete="CASCADE"), index=True
    )
    stage: Mapped[str] = mapped_column(String(16))  # "annotate" | "review" | "complete"
    status: Mapped[str] = mapped_column(String(16))  # the SDK's task status in that stage
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    # 0.0-1.0, set by the project's managers (the SDK's set_priority); None until set
    priority: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()
