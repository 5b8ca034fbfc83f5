"""Download model files and verify them against the manifest's sha256.

Edge devices lose power and networks drop mid-transfer, so a download is streamed to a
temporary file in the destination directory, hashed on the way, fsynced, checked, and only
then renamed over the target with `os.replace` (atomic on one filesystem). A partial or wrong
download is deleted and never replaces a good file.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from tqdm import tqdm

from models.manifest import Manifest, ModelEntry, ModelError, ModelFile, load_manifest
from models.store import CHUNK_BYTES, sha256_file

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0  # socket connect and per-read timeout, seconds


class Opener(Protocol):
    """The part of `urllib.request.urlopen` that fetch uses; tests may pass their own."""

    def __call__(self, url: str, *, timeout: float) -> Any: ...


class FetchError(ModelError):
    """A model could not be downloaded."""


class DownloadError(FetchError):
    """The URL could not be reached or answered with an error."""


class ChecksumMismatchError(FetchError):
    """The downloaded bytes are not the ones the manifest pins."""

    def __init__(self, url: str, expected: str, actual: str) -> None:
        super().__init__(f"sha256 mismatch for {url}: expected {expected}, got {actual}")
        self.url = url
        self.expected = expected
        self.actual = actual


class LicenseNotAcceptedError(FetchError):
    """A non-shippable (AGPL) model was requested without accepting its licence."""


def fetch(
    model: str | ModelEntry,
    dest_dir: Path | str,
    *,
    manifest: Manifest | Path | str | None = None,
    force: bool = False,
    accept_license: str | None = None,
    opener: Opener = urllib.request.urlopen,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> list[Path]:
    """Make every file of `model` present and verified under `dest_dir`; return their paths.

    `model` is a manifest name or an entry (tests inject entries; `manifest` may also be a
    Manifest or a path to one). Files already present with the right sha256 are not
    downloaded again unless `force`. Non-shippable models need `accept_license` equal to
    their licence, because AGPL weights must never reach a deployed device.
    """
    entry = _entry(model, manifest)
    _check_license(entry, accept_license)
    dest_root = Path(dest_dir).expanduser().absolute()
    paths: list[Path] = []
    for spec in entry.files:
        target = dest_root / spec.path
        if not force and target.is_file() and sha256_file(target) == spec.sha256:
            log.info("%s: present, sha256 ok", target)
        else:
            _download(spec, target, opener=opener, progress=progress, timeout=timeout)
            log.info("%s: downloaded, sha256 ok", target)
        paths.append(target)
    return paths


def _entry(model: str | ModelEntry, manifest: Manifest | Path | str | None) -> ModelEntry:
    if isinstance(model, ModelEntry):
        return model
    if not isinstance(manifest, Manifest):
        manifest = load_manifest(manifest)
    return manifest.get(model)


def _check_license(entry: ModelEntry, accept_license: str | None) -> None:
    if entry.shippable or accept_license == entry.license:
        return
    raise LicenseNotAcceptedError(
        f"{entry.name} is licensed {entry.license} and is marked not shippable: lobbywatch "
        f"is Apache-2.0 and these weights may be used for tests and benchmarks only, never "
        f"deployed to a device. To fetch them anyway pass accept_license={entry.license!r} "
        f"(CLI: --accept-license {entry.license})."
    )


def _download(
    spec: ModelFile, target: Path, *, opener: Opener, progress: bool, timeout: float
) -> None:
    """Stream `spec.url` into a temp file beside `target`, verify, then atomically replace."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _copy_url(spec, out, opener=opener, progress=progress, timeout=timeout)
            out.flush()
            os.fsync(out.fileno())  # the rename below must never expose unwritten blocks
        if digest != spec.sha256:
            raise ChecksumMismatchError(spec.url, spec.sha256, digest)
        tmp.chmod(0o644)  # mkstemp creates 0600; models are read by the service user
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _copy_url(
    spec: ModelFile, out: BinaryIO, *, opener: Opener, progress: bool, timeout: float
) -> str:
    """Copy the response body to `out`; return its sha256. Network errors become DownloadError."""
    digest = hashlib.sha256()
    try:
        with opener(spec.url, timeout=timeout) as response:
            length = response.headers.get("Content-Length") if response.headers else None
            total = int(length) if length and length.isdigit() else spec.size
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=Path(spec.path).name,
                file=sys.stderr,
                disable=not progress,
                leave=False,
            ) as bar:
                while chunk := response.read(CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{spec.url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DownloadError(_unreachable(spec.url, exc.reason)) from None
    except TimeoutError as exc:  # socket.timeout is an alias of TimeoutError since 3.10
        reason = f"timed out after {timeout:g} s ({exc})"
        raise DownloadError(_unreachable(spec.url, reason)) from None
    except (ConnectionError, http.client.HTTPException) as exc:
        # Dropped mid-transfer. Local write errors (disk full) are plain OSError and propagate.
        raise DownloadError(_unreachable(spec.url, repr(exc))) from None
    return digest.hexdigest()


def _unreachable(url: str, reason: object) -> str:
    if url.startswith("file:"):
        return f"cannot read {url}: {reason}"
    return (
        f"cannot download {url}: {reason}. If this machine is offline, fetch on a connected "
        "machine and copy the files, or point LOBBYWATCH_MODELS at a directory that has them."
    )
