"""The download, preprocess and split stages on generated archives, run as DVC runs them."""

import http.server
import json
import os
import socket
import stat
import tarfile
import threading

import numpy as np
import pytest

from src.core.errors import PipelineError
from src.data import fetch
from src.training.normalization import normalization_stats
from tests import cifar_fixtures
from tests.conftest import assert_one_error_line


def load(project, folder, name):
    return np.load(project.root / folder / f"{name}.npy")


def run_data_stages(project):
    for stage in ("download", "preprocess", "split"):
        project.run(stage)


# --- download ---------------------------------------------------------------------------------

def test_download_copies_local_archive_and_verifies_md5(project, cifar10_archive):
    result = project.run("download")
    assert project.files("data/raw") == ["cifar-10-python.tar.gz"]
    assert (project.root / "data/raw/cifar-10-python.tar.gz").read_bytes() == cifar10_archive.read_bytes()
    assert "verified" in result.stdout


def test_download_wrong_md5_leaves_nothing(project, cifar10_archive):
    project.set(**{"data.md5": "0" * 32})
    result = project.run("download", check=False)
    assert_one_error_line(result, "checksum mismatch", "expected md5 " + "0" * 32,
                          f"found {cifar_fixtures.md5_of(cifar10_archive)}", "data.md5")
    assert project.files("data/raw") == []


def test_download_missing_local_source(project, tmp_path):
    project.set(**{"data.source": str(tmp_path / "nowhere.tar.gz")})
    result = project.run("download", check=False)
    assert_one_error_line(result, "nowhere.tar.gz does not exist", "data.source")
    assert project.files("data/raw") == []


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block exits: nobody listens


def test_download_unreachable_url(project):
    project.set(**{"data.source": f"http://127.0.0.1:{closed_port()}/cifar-10-python.tar.gz"})
    result = project.run("download", check=False)
    assert_one_error_line(result, "cannot reach http://127.0.0.1", "after 4 tries", "data.source")
    assert project.files("data/raw") == []


class FlakyArchiveServer(http.server.BaseHTTPRequestHandler):
    """Serves the archive, failing the first request with 503 like a transient network error."""

    payload = b""
    requests = 0

    def do_GET(self):
        type(self).requests += 1
        if type(self).requests == 1:
            self.send_error(503)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload)

    def log_message(self, *args):
        pass


def test_download_over_http_retries_transient_errors(tmp_path, cifar10_archive, monkeypatch):
    monkeypatch.setattr(fetch, "RETRY_DELAYS_SECONDS", (0, 0, 0))
    FlakyArchiveServer.payload, FlakyArchiveServer.requests = cifar10_archive.read_bytes(), 0
    server = http.server.HTTPServer(("127.0.0.1", 0), FlakyArchiveServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/cifar-10-python.tar.gz"
        target = fetch.fetch_archive(url, cifar_fixtures.md5_of(cifar10_archive), tmp_path / "raw" / "a.tar.gz")
    finally:
        server.shutdown()
    assert FlakyArchiveServer.requests == 2
    assert target.read_bytes() == cifar10_archive.read_bytes()
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.tar.gz"]


def test_fetch_failure_removes_partial_file(tmp_path, cifar10_archive):
    with pytest.raises(PipelineError, match="checksum mismatch"):
        fetch.fetch_archive(str(cifar10_archive), "f" * 32, tmp_path / "raw" / "a.tar.gz")
    assert list((tmp_path / "raw").iterdir()) == []


# --- preprocess -------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["scale", "standardize", "per_channel"])
def test_normalization_modes(project, mode):
    project.run("download")
    project.run("preprocess")
    train = load(project, "data/processed", "train_images")
    stats = normalization_stats(train, mode)
    assert stats["mode"] == mode
    normalized = (train.astype(np.float64) - stats["mean"]) / stats["std"]
    if mode == "scale":
        assert normalized.min() >= 0 and normalized.max() <= 1 and stats["std"] == [255.0] * 3
    elif mode == "standardize":
        assert len(set(stats["mean"])) == 1
        assert normalized.mean() == pytest.approx(0, abs=1e-5) and normalized.std() == pytest.approx(1, abs=1e-5)
    else:
        assert np.allclose(normalized.reshape(-1, 3).mean(axis=0), 0, atol=1e-5)
        assert np.allclose(normalized.reshape(-1, 3).std(axis=0), 1, atol=1e-5)


def test_preprocess_decodes_cifar10_exactly(project):
    project.run("download")
    project.run("preprocess")
    members = cifar_fixtures.cifar10_members()
    first = pickle_payload(members["cifar-10-batches-py/data_batch_1"])
    images, labels = load(project, "data/processed", "train_images"), load(project, "data/processed", "train_labels")
    assert images.dtype == np.uint8 and images.shape == (250, 32, 32, 3)
    assert labels.dtype == np.uint8 and labels.shape == (250, 10) and (labels.sum(axis=1) == 1).all()
    assert np.array_equal(images[:50], cifar_fixtures.decode_images(first[b"data"]))
    assert np.array_equal(labels[:50].argmax(axis=1), first[b"labels"])
    assert load(project, "data/processed", "test_images").shape == (50, 32, 32, 3)
    classes = json.loads((project.root / "data/processed/classes.json").read_text())
    assert classes["class_names"] == cifar_fixtures.CIFAR10_NAMES


def pickle_payload(data: bytes) -> dict:
    from src.data.cifar_format import load_pickle

    return load_pickle(data, "fixture")


@pytest.mark.parametrize(("label_mode", "classes"), [("fine", 100), ("coarse", 20)])
def test_preprocess_cifar100_label_modes(make_project, cifar100_archive, label_mode, classes):
    project = make_project(cifar100_archive).set(**{"data.label_mode": label_mode})
    project.run("download")
    project.run("preprocess")
    labels = load(project, "data/processed", "train_labels")
    assert labels.shape == (400, classes)
    names = json.loads((project.root / "data/processed/classes.json").read_text())["class_names"]
    assert names[0] == f"{label_mode}_0" and len(names) == classes
    fine = pickle_payload(cifar_fixtures.cifar100_members()["cifar-100-python/train"])[b"fine_labels"]
    expected = np.asarray(fine) // 5 if label_mode == "coarse" else np.asarray(fine)
    assert np.array_equal(labels.argmax(axis=1), expected)


def bad_archive(project, tmp_path, members=None, extra=None):
    archive = cifar_fixtures.write_archive(tmp_path / "bad" / "cifar-10-python.tar.gz",
                                           members or cifar_fixtures.cifar10_members(), extra)
    project.set(**{"data.source": str(archive), "data.md5": cifar_fixtures.md5_of(archive)})
    project.run("download")
    return project.run("preprocess", check=False)


def assert_preprocess_failed_cleanly(project, result, *fragments):
    assert_one_error_line(result, *fragments)
    assert project.files("data/processed") == [] and not any(
        p.name.startswith(".processed") for p in (project.root / "data").iterdir())


def test_truncated_archive(project, tmp_path, cifar10_archive):
    truncated = tmp_path / "t" / "cifar-10-python.tar.gz"
    truncated.parent.mkdir()
    truncated.write_bytes(cifar10_archive.read_bytes()[:5000])
    project.set(**{"data.source": str(truncated), "data.md5": cifar_fixtures.md5_of(truncated)})
    project.run("download")
    assert_preprocess_failed_cleanly(project, project.run("preprocess", check=False), "corrupt archive")


def test_not_a_gzip_file(project, tmp_path):
    fake = tmp_path / "f" / "cifar-10-python.tar.gz"
    fake.parent.mkdir()
    fake.write_bytes(b"<html>this is an error page, not an archive</html>")
    project.set(**{"data.source": str(fake), "data.md5": cifar_fixtures.md5_of(fake)})
    project.run("download")
    assert_preprocess_failed_cleanly(project, project.run("preprocess", check=False), "corrupt archive",
                                     "dvc repro download")


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/evil.txt", "cifar-10-batches-py/../../up.txt"])
def test_members_escaping_the_folder_are_refused(project, tmp_path, name):
    member = tarfile.TarInfo(name)
    member.size = 4
    result = bad_archive(project, tmp_path, extra=[member])
    assert_preprocess_failed_cleanly(project, result, "unsafe archive", repr(name))
    assert not (project.root.parent / "escape.txt").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE])
def test_links_and_devices_are_refused(project, tmp_path, kind):
    member = tarfile.TarInfo("cifar-10-batches-py/data_batch_6")
    member.type, member.linkname = kind, "/etc/passwd"
    result = bad_archive(project, tmp_path, extra=[member])
    assert_preprocess_failed_cleanly(project, result, "unsafe archive", "data_batch_6")


def test_pickle_with_forbidden_global_is_not_executed(project, tmp_path):
    sentinel = tmp_path / "pwned"
    members = cifar_fixtures.cifar10_members()
    members["cifar-10-batches-py/data_batch_2"] = cifar_fixtures.py2_pickle(
        {b"data": cifar_fixtures.Exploit(f"touch {sentinel}"), b"labels": []})
    result = bad_archive(project, tmp_path, members)
    assert_preprocess_failed_cleanly(project, result, "data_batch_2", "posix.system", "refused")
    assert not sentinel.exists()


def test_wrong_array_shape(project, tmp_path):
    members = cifar_fixtures.cifar10_members()
    members["cifar-10-batches-py/test_batch"] = cifar_fixtures.py2_pickle(
        {b"data": np.zeros((5, 1000), dtype=np.uint8), b"labels": [0] * 5})
    result = bad_archive(project, tmp_path, members)
    assert_preprocess_failed_cleanly(project, result, "test_batch", "(N, 3072)", "(5, 1000)")


def test_label_out_of_range(project, tmp_path):
    members = cifar_fixtures.cifar10_members()
    payload = pickle_payload(members["cifar-10-batches-py/data_batch_3"])
    payload[b"labels"][7] = 10
    members["cifar-10-batches-py/data_batch_3"] = cifar_fixtures.py2_pickle(payload)
    result = bad_archive(project, tmp_path, members)
    assert_preprocess_failed_cleanly(project, result, "data_batch_3", "label out of range [0, 9]")


def test_missing_member(project, tmp_path):
    members = cifar_fixtures.cifar10_members()
    del members["cifar-10-batches-py/data_batch_5"]
    result = bad_archive(project, tmp_path, members)
    assert_preprocess_failed_cleanly(project, result, "lacks cifar-10-batches-py/data_batch_5")


# --- split ------------------------------------------------------------------------------------

def test_split_is_stratified_and_leaves_test_untouched(project):
    project.set(**{"split.val_fraction": 0.3})
    run_data_stages(project)
    labels = load(project, "data/processed", "train_labels")
    train, val = load(project, "data/split", "train_labels"), load(project, "data/split", "val_labels")
    assert len(train) + len(val) == len(labels) and len(val) == 75
    overall = labels.sum(axis=0) / len(labels)
    for part in (train, val):
        # every class within one sample of its exact share
        assert np.all(np.abs(part.sum(axis=0) - overall * len(part)) <= 1)
    counts = json.loads((project.root / "data/split/class_counts.json").read_text())
    assert sum(counts["val"].values()) == 75 and counts["train"]["cat"] == int(train.sum(axis=0)[3])
    assert sum(counts["test"].values()) == 50
    train_images = load(project, "data/split", "train_images")
    all_images = load(project, "data/processed", "train_images")
    assert {img.tobytes() for img in train_images} <= {img.tobytes() for img in all_images}


def data_outputs(project) -> dict:
    return {p.relative_to(project.root).as_posix(): p.read_bytes()
            for folder in ("data/raw", "data/processed", "data/split") for p in (project.root / folder).iterdir()}


def test_same_params_give_byte_identical_outputs(make_project, cifar10_archive):
    first, second = make_project(cifar10_archive, "a"), make_project(cifar10_archive, "b")
    run_data_stages(first)
    run_data_stages(second)
    assert data_outputs(first) == data_outputs(second)


def test_split_seed_changes_the_split(project):
    run_data_stages(project)
    before = load(project, "data/split", "val_images")
    project.set(**{"split.seed": 21})
    project.run("split")
    assert not np.array_equal(before, load(project, "data/split", "val_images"))


def test_split_too_small_for_stratification(project):
    project.run("download")
    project.run("preprocess")
    project.set(**{"split.val_fraction": 0.01})  # 2 validation images for 10 classes
    result = project.run("split", check=False)
    assert_one_error_line(result, "cannot split 250 training images", "split.val_fraction")
    assert project.files("data/split") == []


def test_split_without_preprocess_output(project):
    assert_one_error_line(project.run("split", check=False), "train_images.npy is missing",
                          "dvc repro preprocess")


def test_outputs_get_the_usual_permissions(project):
    # tempfile creates 0600 files and 0700 folders; published outputs follow the umask instead.
    run_data_stages(project)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((project.root / "data/raw/cifar-10-python.tar.gz").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((project.root / "data/split").stat().st_mode) == 0o777 & ~umask
