"""storage: atomic writes, listing, parquet and manifests, on local disk and on S3 (moto)."""
from __future__ import annotations

import socket

import pandas as pd
import pytest

from sptf_ray import storage


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto_endpoint():
    server_mod = pytest.importorskip("moto.server", reason="moto[server] not installed")
    port = _free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path, monkeypatch):
    """A fresh artifact root URI: a local dir, or a bucket on a local moto S3 server."""
    if request.param == "local":
        return str(tmp_path / "root")
    endpoint = request.getfixturevalue("moto_endpoint")
    monkeypatch.setenv("SPTF_S3_ENDPOINT", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    import pyarrow.fs as pafs

    bucket = f"b{tmp_path.name.lower().replace('_', '-')[-40:]}"
    fs = pafs.S3FileSystem(
        endpoint_override=endpoint.split("://")[1], scheme="http",
        access_key="testing", secret_key="testing", region="us-east-1",
        allow_bucket_creation=True,
    )
    fs.create_dir(bucket)
    return f"s3://{bucket}/root"


def test_resolve_local_and_file_uri(tmp_path):
    fs, path = storage.resolve(str(tmp_path / "a"))
    assert path == str(tmp_path / "a")
    fs2, path2 = storage.resolve(f"file://{tmp_path}/a")
    assert path2 == path and type(fs2) is type(fs)


def test_resolve_s3_honours_endpoint_env(monkeypatch):
    import pyarrow.fs as pafs

    monkeypatch.setenv("SPTF_S3_ENDPOINT", "http://127.0.0.1:9")
    fs, path = storage.resolve("s3://bucket/dir/file.parquet")
    assert isinstance(fs, pafs.S3FileSystem) and path == "bucket/dir/file.parquet"
    options = fs.__reduce__()[1][0]  # the constructor kwargs pyarrow pickles
    assert options["endpoint_override"] == "127.0.0.1:9" and options["scheme"] == "http"


def test_join():
    assert storage.join("s3://b/x/", "y", "/z.json") == "s3://b/x/y/z.json"
    assert storage.join("/tmp/a", "b") == "/tmp/a/b"


def test_bytes_text_roundtrip_and_listing(root):
    storage.atomic_write_bytes(storage.join(root, "a.bin"), b"\x00\x01")
    storage.atomic_write_text(storage.join(root, "b.txt"), "héllo")
    assert storage.read_bytes(storage.join(root, "a.bin")) == b"\x00\x01"
    assert storage.read_text(storage.join(root, "b.txt")) == "héllo"
    assert storage.exists(storage.join(root, "a.bin"))
    assert not storage.exists(storage.join(root, "nope"))
    assert storage.list_files(root) == [storage.join(root, "a.bin"), storage.join(root, "b.txt")]
    assert storage.list_files(root, suffix=".txt") == [storage.join(root, "b.txt")]
    storage.remove(storage.join(root, "a.bin"))
    assert not storage.exists(storage.join(root, "a.bin"))
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(storage.join(root, "a.bin"))


def test_failed_write_leaves_no_file_and_no_temporary(root):
    target = storage.join(root, "x.bin")
    storage.atomic_write_bytes(target, b"old")

    def explode(stream):
        stream.write(b"partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        storage.atomic_write(target, explode)
    assert storage.read_bytes(target) == b"old"  # previous version untouched
    fs, path = storage.resolve(root)
    import pyarrow.fs as pafs

    names = [i.base_name for i in fs.get_file_info(pafs.FileSelector(path))]
    assert names == ["x.bin"], names  # the partial temporary was deleted


def test_parquet_roundtrip(root):
    df = pd.DataFrame({"site_id": ["a", "b"], "v": [1.5, 2.5]})
    uri = storage.join(root, "t.parquet")
    storage.atomic_write_parquet(df, uri)
    back = storage.read_parquet(uri)
    assert back["v"].tolist() == [1.5, 2.5]
    assert storage.read_parquet(uri, columns=["v"]).columns.tolist() == ["v"]


def test_manifest_verifies_and_detects_tampering(root):
    storage.atomic_write_bytes(storage.join(root, "a.bin"), b"abc")
    storage.atomic_write_bytes(storage.join(root, "sub/b.bin"), b"defg")
    assert not storage.verify_manifest(root)  # no manifest yet: incomplete
    manifest = storage.write_manifest(root, ["a.bin", "sub/b.bin"], {"seed": 3})
    assert manifest["files"]["sub/b.bin"]["size"] == 4
    assert storage.read_manifest(root)["extra"] == {"seed": 3}
    assert storage.verify_manifest(root)
    storage.atomic_write_bytes(storage.join(root, "a.bin"), b"abd")  # same size, other bytes
    assert not storage.verify_manifest(root)
    storage.remove(storage.join(root, "a.bin"))
    assert not storage.verify_manifest(root)


def test_manifest_rejects_missing_and_escaping_names(tmp_path):
    with pytest.raises(FileNotFoundError, match="ghost"):
        storage.write_manifest(str(tmp_path), ["ghost.bin"], {})
    with pytest.raises(ValueError):
        storage.write_manifest(str(tmp_path), ["../x"], {})
    (tmp_path / "manifest.json").write_text("{not json")
    assert not storage.verify_manifest(str(tmp_path))
    with pytest.raises(ValueError, match="corrupt"):
        storage.read_manifest(str(tmp_path))


def test_list_files_missing_dir_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        storage.list_files(str(tmp_path / "nope"))
