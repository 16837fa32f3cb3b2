"""The local-directory backend: conformance, traversal and symlink escapes, signed links."""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from corral.core import integrations, secrets
from corral.core.identity import Principal
from corral.storage.base import BucketNotFound, OutOfScope, StorageContext
from corral.storage.local import LocalStorage
from corral.storage.localroots import LocalRootPolicy
from corral.storage.options import LocalOptions
from tests.storage.conformance import StorageConformance


def admin(user) -> Principal:  # type: ignore[no-untyped-def]
    return Principal(user.user_id, user.org_id, user.email, "admin", "bearer")


@pytest.fixture
def local_root(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    return root


@pytest.fixture
def local_integration(db, make_user, settings, local_root):  # type: ignore[no-untyped-def]
    alice = make_user("alice@x.io")
    with db.write() as s:
        return integrations.create(s, admin(alice), settings, title="local",
                                   provider="local", values={"root": str(local_root)})


def _storage(root: Path, settings, integration_id: str, public_url: str) -> LocalStorage:  # type: ignore[no-untyped-def]
    ctx = StorageContext(public_url=public_url, integration_id=integration_id,
                         signing_key=secrets.local_media_key(settings.resolved_secret_key()),
                         local_roots=LocalRootPolicy((str(root),)))
    return LocalStorage(LocalOptions(root=str(root)), ctx)


class TestLocalConformance(StorageConformance):
    @pytest.fixture
    def storage(self, local_root, local_integration, settings, live_server) -> LocalStorage:  # type: ignore[no-untyped-def]
        return _storage(local_root, settings, str(local_integration.id), live_server)

    @pytest.fixture
    def missing_bucket_storage(self, tmp_path, settings) -> LocalStorage:  # type: ignore[no-untyped-def]
        return _storage(tmp_path / "no-such-dir", settings, "x", "http://127.0.0.1:1")


# -- traversal and symlinks (no server needed) ------------------------------------------


@pytest.fixture
def bare(tmp_path: Path) -> LocalStorage:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "ok.txt").write_bytes(b"inside")
    (tmp_path / "secret.txt").write_bytes(b"outside")
    (tmp_path / "outside-dir").mkdir()
    (tmp_path / "outside-dir" / "x.txt").write_bytes(b"outside too")
    ctx = StorageContext(signing_key=b"k" * 32, integration_id="i", local_roots=LocalRootPolicy((str(root),)))
    return LocalStorage(LocalOptions(root=str(root)), ctx)


@pytest.mark.parametrize("key", ["../secret.txt", "sub/../../secret.txt", "/etc/passwd", "sub/./ok.txt",
                                 "", "sub//ok.txt", "a\x00b"])
def test_traversal_keys_are_refused(bare: LocalStorage, key: str) -> None:
    with pytest.raises(OutOfScope):
        bare.stat(key)
    with pytest.raises(OutOfScope):
        bare.read(key)
    with pytest.raises(OutOfScope):
        bare.put(key, b"x")


def test_symlink_escapes_are_refused(bare: LocalStorage, tmp_path: Path) -> None:
    root = Path(bare.options.root)
    os.symlink(tmp_path / "secret.txt", root / "link-out.txt")
    os.symlink(tmp_path / "outside-dir", root / "dir-out")
    os.symlink(root / "sub" / "ok.txt", root / "link-in.txt")
    for key in ("link-out.txt", "dir-out/x.txt"):
        with pytest.raises(PermissionError):
            bare.stat(key)
        with pytest.raises(PermissionError):
            bare.read(key)
    with pytest.raises(PermissionError):
        bare.put("dir-out/new.txt", b"x")
    assert not (tmp_path / "outside-dir" / "new.txt").exists()
    # A link that stays inside the root is followed; listings never follow links.
    assert bare.read("link-in.txt") == b"inside"
    assert [o.key for o in bare.iter_prefix("")] == ["sub/ok.txt"]


def test_a_directory_swapped_for_a_symlink_after_the_check_is_not_followed(bare: LocalStorage,
                                                                            tmp_path: Path) -> None:
    root = Path(bare.options.root)
    real_root, parts = bare._resolve("sub/ok.txt")
    # Simulate the race: after resolution, "sub" becomes a link to a directory outside.
    os.rename(root / "sub", root / "sub-moved")
    os.symlink(tmp_path / "outside-dir", root / "sub")
    (tmp_path / "outside-dir" / "ok.txt").write_bytes(b"attacker")
    with pytest.raises(OSError):  # ENOTDIR/ELOOP: O_NOFOLLOW refuses the swapped-in link
        bare._walk_fd(real_root, parts[:-1])
    with pytest.raises(PermissionError):
        bare.read("sub/ok.txt")  # resolves outside now: refused at the check


def test_special_files_are_not_objects(bare: LocalStorage) -> None:
    root = Path(bare.options.root)
    os.mkfifo(root / "pipe")
    with pytest.raises(FileNotFoundError):
        bare.stat("pipe")
    with pytest.raises(FileNotFoundError):
        bare.read("sub")


def test_local_url_forms(bare: LocalStorage, tmp_path: Path) -> None:
    root = bare.options.root
    assert bare.key_for_url(f"file://{root}/sub/a%20b.txt") == "sub/a b.txt"
    assert bare.key_for_url(f"file://localhost{root}/x") == "x"
    assert bare.key_for_url(f"{root}/sub/ok.txt") == "sub/ok.txt"
    assert bare.key_for_url("sub/ok.txt") == "sub/ok.txt"
    for url in (f"file://{tmp_path}/secret.txt", str(tmp_path / "secret.txt"), f"{root}-sibling/x",
                f"file://otherhost{root}/x", "https://example.com/x", "s3://bucket/x"):
        with pytest.raises(OutOfScope):
            bare.key_for_url(url)


def test_missing_root_is_bucket_not_found(tmp_path: Path) -> None:
    s = LocalStorage(LocalOptions(root=str(tmp_path / "gone")),
                     StorageContext(local_roots=LocalRootPolicy((str(tmp_path),))))
    with pytest.raises(BucketNotFound):
        s.stat("x")


# -- signed links served by corral --------------------------------------------------------


def _tamper(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_signed_links_are_checked(local_root, local_integration, settings, live_server) -> None:  # type: ignore[no-untyped-def]
    storage = _storage(local_root, settings, str(local_integration.id), live_server)
    storage.put("a/clip.bin", b"0123456789")
    storage.put("a/other.bin", b"other")
    good = storage.sign_get("a/clip.bin", 60)
    assert httpx.get(good).content == b"0123456789"
    head = httpx.head(good)
    assert head.status_code == 200 and head.headers["content-length"] == "10"

    sig = parse_qs(urlsplit(good).query)["sig"][0]
    bad_sig = _tamper(good, sig=("A" if sig[0] != "A" else "B") + sig[1:])
    longer = _tamper(good, expires=str(int(time.time()) + 99999))
    other_key = good.replace("a/clip.bin", "a/other.bin")
    unsigned = good.split("?")[0]
    for url in (bad_sig, longer, other_key, unsigned):
        r = httpx.get(url)
        assert r.status_code == 403, (url, r.text)
        assert r.json()["code"] == "permission_denied"
    expired = storage.sign_get("a/clip.bin", -1)
    r = httpx.get(expired)
    assert r.status_code == 403 and "expired" in r.json()["message"]

    # A GET link cannot upload, and a PUT link cannot download.
    assert httpx.put(good, content=b"overwrite").status_code == 403
    put_url = storage.sign_put("a/clip.bin", 60)
    assert httpx.get(put_url).status_code == 403
    assert storage.read("a/clip.bin") == b"0123456789"

    # Another integration's links are not valid for this one.
    forged = good.replace(str(local_integration.id), "00000000-0000-0000-0000-000000000000")
    assert httpx.get(forged).status_code == 403


def test_signed_link_ranges(local_root, local_integration, settings, live_server) -> None:  # type: ignore[no-untyped-def]
    storage = _storage(local_root, settings, str(local_integration.id), live_server)
    storage.put("r.bin", b"abcdefghij")
    url = storage.sign_get("r.bin", 60)
    r = httpx.get(url, headers={"Range": "bytes=2-4"})
    assert (r.status_code, r.content, r.headers["content-range"]) == (206, b"cde", "bytes 2-4/10")
    r = httpx.get(url, headers={"Range": "bytes=7-"})
    assert (r.status_code, r.content) == (206, b"hij")
    r = httpx.get(url, headers={"Range": "bytes=20-30"})
    assert r.status_code == 416 and r.headers["content-range"] == "bytes */10"
    r = httpx.get(url, headers={"Range": "bytes=0-1,4-5"})  # several ranges: whole file
    assert (r.status_code, r.content) == (200, b"abcdefghij")


def test_signed_link_for_a_deleted_integration_is_404(local_root, local_integration, settings, live_server,  # type: ignore[no-untyped-def]
                                                      db, make_user) -> None:
    storage = _storage(local_root, settings, str(local_integration.id), live_server)
    storage.put("x.txt", b"x")
    url = storage.sign_get("x.txt", 60)
    bob = make_user("bob@x.io", org="Org A")
    with db.write() as s:
        integrations.delete(s, admin(bob), local_integration.id)
    assert httpx.get(url).status_code == 404
