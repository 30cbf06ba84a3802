"""Fetch the data set archive from a URL or a local mirror, verified by md5, written atomically."""

import hashlib
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from src.core.errors import PipelineError
from src.core.fileio import atomic_path

CHUNK_BYTES = 1 << 20
RETRY_DELAYS_SECONDS = (1, 2, 4)
TIMEOUT_SECONDS = 30


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _progress(total: int | None, label: str) -> tqdm:
    # mininterval keeps `dvc repro` logs short when stderr is not a terminal.
    return tqdm(total=total, unit="B", unit_scale=True, desc=label, mininterval=5, leave=False)


def _copy_stream(stream, destination: Path, total: int | None, label: str) -> str:
    md5 = hashlib.md5()
    with destination.open("wb") as out, _progress(total, label) as bar:
        while chunk := stream.read(CHUNK_BYTES):
            md5.update(chunk)
            out.write(chunk)
            bar.update(len(chunk))
    return md5.hexdigest()


def _download(url: str, destination: Path) -> str:
    last_error: Exception | None = None
    for attempt, delay in enumerate((0, *RETRY_DELAYS_SECONDS)):
        time.sleep(delay)
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                return _copy_stream(response, destination, total, f"download (try {attempt + 1})")
        except urllib.error.HTTPError as error:
            if error.code < 500:  # 4xx will not change on retry
                raise PipelineError(f"cannot download {url}: HTTP {error.code} {error.reason}; "
                                    "fix `data.source` in params.yaml") from None
            last_error = error
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
            last_error = error
    reason = getattr(last_error, "reason", last_error)
    raise PipelineError(f"cannot reach {url} after {len(RETRY_DELAYS_SECONDS) + 1} tries ({reason}); "
                        "check the network, or set `data.source` in params.yaml to a local copy "
                        "of the archive (and `data.md5` to its md5)")


def _copy_local(source: str, destination: Path) -> str:
    path = Path(source).expanduser()
    if not path.is_file():
        raise PipelineError(f"local source {source} does not exist (resolved to {path.resolve()}); "
                            "set `data.source` in params.yaml to the archive's path, or to null "
                            "to download the official archive")
    with path.open("rb") as stream:
        return _copy_stream(stream, destination, path.stat().st_size, "copy")


def fetch_archive(source: str, expected_md5: str, destination: Path) -> Path:
    """Fetch ``source`` to ``destination``; on any failure nothing is left at ``destination``."""
    with atomic_path(destination) as partial:
        found_md5 = _download(source, partial) if _is_url(source) else _copy_local(source, partial)
        if found_md5 != expected_md5:
            raise PipelineError(f"checksum mismatch for {source}: expected md5 {expected_md5}, "
                                f"found {found_md5}; set `data.md5` in params.yaml to the archive's "
                                "real md5 if you trust this file, or fix `data.source`")
    return destination


def clear_folder(folder: Path) -> None:
    """Empty the download folder so a failed fetch cannot leave a stale archive behind."""
    if folder.exists():
        shutil.rmtree(folder)
