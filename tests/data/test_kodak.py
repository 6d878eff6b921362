"""Kodak download against a local HTTP server on loopback: checked files kept, bad ones refused."""

import functools
import hashlib
import http.server
import re
import threading
from pathlib import Path

import pytest

from rtaic.data import kodak
from rtaic.data.folders import sha256_file


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _publish(served, files: dict[str, bytes]) -> dict[str, str]:
    for name, data in files.items():
        (served / name).write_bytes(data)
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def test_downloads_and_checks(server, tmp_path):
    served, url = server
    sums = _publish(served, {"kodim01.png": b"one" * 1000, "kodim02.png": b"two" * 50000})
    root = kodak.download_kodak(tmp_path / "cache", base_url=url, checksums=sums, timeout=5, progress=False)
    assert (root / "kodim02.png").read_bytes() == b"two" * 50000
    assert sorted(p.name for p in root.iterdir()) == ["kodim01.png", "kodim02.png"]
    # A second call finds everything checked on disk and makes no request (server emptied).
    for p in served.iterdir():
        p.unlink()
    assert kodak.download_kodak(root, base_url=url, checksums=sums, timeout=5, progress=False) == root


def test_refuses_a_file_that_fails_its_check(server, tmp_path):
    served, url = server
    sums = _publish(served, {"kodim01.png": b"good"})
    sums["kodim01.png"] = hashlib.sha256(b"what the publisher hashed").hexdigest()
    with pytest.raises(kodak.ChecksumError, match="kodim01.png"):
        kodak.download_kodak(tmp_path / "k", base_url=url, checksums=sums, timeout=5, progress=False)
    assert list((tmp_path / "k").iterdir()) == []  # neither the file nor a partial download


def test_replaces_a_corrupted_local_copy(server, tmp_path):
    served, url = server
    sums = _publish(served, {"kodim03.png": b"pixels"})
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "kodim03.png").write_bytes(b"bitrot")
    kodak.download_kodak(tmp_path / "k", base_url=url, checksums=sums, timeout=5, progress=False)
    assert (tmp_path / "k" / "kodim03.png").read_bytes() == b"pixels"


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("RTAIC_CACHE", str(tmp_path / "cache"))
    assert kodak.default_cache_dir() == tmp_path / "cache"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # Path.home() reads HOME
    for unset in (monkeypatch.delenv, lambda name: monkeypatch.setenv(name, "")):
        unset("RTAIC_CACHE")
        assert kodak.default_cache_dir() == tmp_path / "home" / ".cache" / "rtaic"


def test_embedded_checksums_are_24_distinct_sha256_digests():
    assert sorted(kodak.KODAK_SHA256) == [f"kodim{i:02d}.png" for i in range(1, 25)]
    digests = list(kodak.KODAK_SHA256.values())
    assert all(re.fullmatch("[0-9a-f]{64}", h) for h in digests)
    assert len(set(digests)) == 24


SHARED_KODAK = Path(__file__).resolve().parents[3] / "shared" / "data" / "kodak"


@pytest.mark.skipif(not (SHARED_KODAK / "kodim24.png").exists(), reason="no local copy of Kodak")
def test_embedded_checksums_match_the_real_images():
    got = {name: sha256_file(SHARED_KODAK / name) for name in kodak.KODAK_SHA256}
    assert got == kodak.KODAK_SHA256
