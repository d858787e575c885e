"""Artifact I/O by URI: a local path, file://, s3://, gs:// or any pyarrow filesystem.

Every write is atomic from a reader's point of view: the bytes go to a temporary name in
the same directory (`.{name}.tmp-{uuid}`) and are moved onto the final name only once
complete. On object stores a move is copy + delete, and an exception inside
`open_output_stream` still publishes whatever was written, so it is the temporary key that
may receive a partial object, and it is deleted on failure.

A directory artifact (checkpoint, shard set, run dir) is complete only when its
`manifest.json`, written last, verifies: every listed file has the recorded size and sha256.

S3-compatible servers: for s3:// URIs, `SPTF_S3_ENDPOINT` (preferred) or `AWS_ENDPOINT_URL`
points pyarrow at another endpoint, e.g. `http://127.0.0.1:9000`; credentials and region come
from the usual AWS environment variables.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import posixpath
import uuid
from typing import TYPE_CHECKING, Callable, Iterable
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

if TYPE_CHECKING:
    import pandas as pd

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
_CHUNK = 4 * 1024 * 1024

__all__ = [
    "MANIFEST_NAME",
    "resolve",
    "join",
    "exists",
    "makedirs",
    "list_files",
    "remove",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_parquet",
    "read_parquet",
    "read_bytes",
    "read_text",
    "file_sha256",
    "write_manifest",
    "verify_manifest",
    "read_manifest",
]


# --------------------------------------------------------------------------- resolving
def _is_windows_drive(scheme: str) -> bool:
    return len(scheme) == 1  # "C:\\..." parses as scheme "c"


def _s3_endpoint() -> str | None:
    return os.environ.get("SPTF_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL") or None


def _s3_filesystem(endpoint: str | None) -> pafs.S3FileSystem:
    kwargs: dict = {}
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"http://{endpoint}")
        kwargs["endpoint_override"] = parsed.netloc
        kwargs["scheme"] = parsed.scheme or "http"
        # S3-compatible servers rarely care about the region, but the SDK needs one.
        kwargs["region"] = region or "us-east-1"
    elif region:
        kwargs["region"] = region
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        kwargs["access_key"] = key
        kwargs["secret_key"] = secret
        if os.environ.get("AWS_SESSION_TOKEN"):
            kwargs["session_token"] = os.environ["AWS_SESSION_TOKEN"]
    return pafs.S3FileSystem(**kwargs)


def resolve(uri) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or a URI.

    Local paths are made absolute. s3:// honours SPTF_S3_ENDPOINT / AWS_ENDPOINT_URL.
    """
    uri = os.fspath(uri)
    if not uri:
        raise ValueError("empty URI")
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme == "" or _is_windows_drive(scheme):
        return pafs.LocalFileSystem(), os.path.abspath(uri)
    if scheme == "file":
        return pafs.LocalFileSystem(), os.path.abspath(parsed.path)
    if scheme in ("s3", "s3a"):
        path = (parsed.netloc + parsed.path).rstrip("/")
        if not parsed.netloc:
            raise ValueError(f"s3 URI without a bucket: {uri!r}")
        return _s3_filesystem(_s3_endpoint()), path
    fs, path = pafs.FileSystem.from_uri(uri)
    return fs, path.rstrip("/")


def absolute(uri) -> str:
    """A local path made absolute (a URI as it is): for paths handed to Ray workers and trials,
    whose working directory is not the caller's."""
    uri = os.fspath(uri)
    return uri if "://" in uri else os.path.abspath(uri)


def join(uri, *parts: str) -> str:
    """Join path parts onto a local path or URI with '/' (object stores have no os.sep)."""
    out = os.fspath(uri)
    for part in parts:
        part = os.fspath(part)
        if not part:
            continue
        out = out.rstrip("/") + "/" + part.lstrip("/")
    return out


# --------------------------------------------------------------------------- queries
def exists(uri) -> bool:
    fs, path = resolve(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def makedirs(uri) -> None:
    fs, path = resolve(uri)
    fs.create_dir(path, recursive=True)


def list_files(uri, suffix: str | None = None) -> list[str]:
    """Sorted URIs of the plain files directly inside directory `uri`.

    Hidden files (leading '.', which includes in-flight temporaries) are skipped.
    A missing directory is an error, not an empty list.
    """
    uri = os.fspath(uri)
    fs, path = resolve(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"no such directory: {uri}")
    if info.type == pafs.FileType.File:
        raise NotADirectoryError(f"not a directory: {uri}")
    selector = pafs.FileSelector(path, recursive=False)
    names = sorted(
        posixpath.basename(i.path)
        for i in fs.get_file_info(selector)
        if i.type == pafs.FileType.File
    )
    names = [n for n in names if not n.startswith(".") and (suffix is None or n.endswith(suffix))]
    return [join(uri, n) for n in names]


def remove(uri, missing_ok: bool = True) -> None:
    """Delete a file or a whole directory tree."""
    fs, path = resolve(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        if missing_ok:
            return
        raise FileNotFoundError(f"nothing to remove at {uri}")
    if info.type == pafs.FileType.Directory:
        fs.delete_dir(path)
    else:
        fs.delete_file(path)


# --------------------------------------------------------------------------- writing
def atomic_write(uri, write: Callable[[pa.NativeFile], None]) -> str:
    """Call `write(stream)` on a temporary file beside `uri`, then move it onto `uri`.

    On any failure the temporary is deleted and the final name is left untouched.
    Returns `uri`.
    """
    uri = os.fspath(uri)
    fs, path = resolve(uri)
    parent, name = posixpath.split(path)
    if not name:
        raise ValueError(f"cannot write to a directory URI: {uri!r}")
    fs.create_dir(parent, recursive=True)
    tmp = posixpath.join(parent, f".{name}.tmp-{uuid.uuid4().hex}")
    try:
        with fs.open_output_stream(tmp) as stream:
            write(stream)
        fs.move(tmp, path)
    except BaseException:
        try:
            fs.delete_file(tmp)
        except Exception:  # already gone or never created: nothing to clean
            pass
        raise
    return uri


def atomic_write_bytes(uri, data: bytes) -> str:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"atomic_write_bytes needs bytes, got {type(data).__name__}")
    return atomic_write(uri, lambda stream: stream.write(bytes(data)))


def atomic_write_text(uri, text: str) -> str:
    return atomic_write_bytes(uri, text.encode("utf-8"))


def atomic_write_parquet(df_or_table, uri, compression: str = "zstd", metadata: dict[str, str] | None = None) -> str:
    """Write a pandas DataFrame or pyarrow Table as one Parquet file, atomically; `metadata` goes into
    the file's key-value metadata (read back with read_parquet_and_metadata) without touching the columns."""
    if isinstance(df_or_table, pa.Table):
        table = df_or_table
    else:
        table = pa.Table.from_pandas(df_or_table, preserve_index=False)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               **{k.encode(): v.encode() for k, v in metadata.items()}})
    return atomic_write(uri, lambda stream: pq.write_table(table, stream, compression=compression))


# --------------------------------------------------------------------------- reading
def _open_input(uri):
    fs, path = resolve(uri)
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(f"no such file: {uri}")
    return fs, path


def read_bytes(uri) -> bytes:
    fs, path = _open_input(uri)
    with fs.open_input_stream(path) as f:
        return f.read()


def read_text(uri) -> str:
    return read_bytes(uri).decode("utf-8")


def read_parquet(uri, columns: Iterable[str] | None = None):
    """One Parquet file as a pandas DataFrame (optionally only `columns`)."""
    return read_parquet_and_metadata(uri, columns)[0]


def read_parquet_and_metadata(uri, columns: Iterable[str] | None = None) -> tuple["pd.DataFrame", dict[str, str]]:
    """One Parquet file as a DataFrame and its key-value metadata (pandas' own entry left out)."""
    fs, path = _open_input(uri)
    with fs.open_input_file(path) as f:
        table = pq.read_table(f, columns=list(columns) if columns is not None else None)
    raw = table.schema.metadata or {}
    return table.to_pandas(), {k.decode(): v.decode() for k, v in raw.items() if k != b"pandas"}


def read_parquet_key_values(uri) -> dict[str, str]:
    """A Parquet file's key-value metadata (pandas' own entry left out), from its footer alone."""
    fs, path = _open_input(uri)
    with fs.open_input_file(path) as f:
        raw = pq.read_metadata(f).metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items() if k != b"pandas"}


def file_sha256(uri) -> tuple[int, str]:
    """(size in bytes, sha256 hex) of a file, streamed."""
    fs, path = _open_input(uri)
    digest = hashlib.sha256()
    size = 0
    with fs.open_input_stream(path) as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            digest.update(chunk)
    return size, digest.hexdigest()


# --------------------------------------------------------------------------- manifests
def _check_relative(name: str) -> None:
    if not name or name.startswith("/") or "://" in name or ".." in name.split("/"):
        raise ValueError(f"manifest entries must be paths relative to the directory: {name!r}")
    if name == MANIFEST_NAME:
        raise ValueError("the manifest cannot list itself")


def write_manifest(dir_uri, files: list[str], extra: dict | None = None) -> dict:
    """Checksum `files` (names relative to `dir_uri`) and write `manifest.json` last.

    The manifest is {"version", "created_utc", "files": {name: {"size", "sha256"}}, "extra"}.
    Raises FileNotFoundError naming any listed file that does not exist.
    """
    dir_uri = os.fspath(dir_uri)
    entries: dict[str, dict] = {}
    missing = []
    for name in files:
        _check_relative(name)
        try:
            size, sha = file_sha256(join(dir_uri, name))
        except FileNotFoundError:
            missing.append(name)
            continue
        entries[name] = {"size": size, "sha256": sha}
    if missing:
        raise FileNotFoundError(f"manifest for {dir_uri}: files not found: {missing}")
    manifest = {
        "version": MANIFEST_VERSION,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "files": entries,
        "extra": dict(extra or {}),
    }
    text = json.dumps(manifest, indent=2, sort_keys=True, default=str)
    atomic_write_text(join(dir_uri, MANIFEST_NAME), text + "\n")
    return manifest


def read_manifest(dir_uri) -> dict:
    """The parsed manifest; FileNotFoundError if absent, ValueError if unreadable."""
    uri = join(os.fspath(dir_uri), MANIFEST_NAME)
    raw = read_bytes(uri)
    try:
        manifest = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"corrupt manifest {uri}: {exc}") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise ValueError(f"corrupt manifest {uri}: no 'files' mapping")
    return manifest


def verify_manifest(dir_uri) -> bool:
    """True only when the manifest exists and every listed file matches size and sha256."""
    dir_uri = os.fspath(dir_uri)
    try:
        manifest = read_manifest(dir_uri)
    except (FileNotFoundError, ValueError):
        return False
    for name, entry in manifest["files"].items():
        try:
            size, sha = file_sha256(join(dir_uri, name))
        except FileNotFoundError:
            return False
        if size != entry.get("size") or sha != entry.get("sha256"):
            return False
    return True

