"""Kodak download against a local HTTP server on loopback: checked files kept, bad ones refused."""

import functools
import hashlib
import http.server
import threading

import pytest

from rtaic.data import kodak


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


def test_default_cache_dir_and_embedded_checksums(monkeypatch, tmp_path):
    monkeypatch.setenv("RTAIC_CACHE", str(tmp_path))
    assert kodak.default_cache_dir() == tmp_path
    monkeypatch.delenv("RTAIC_CACHE")
    assert kodak.default_cache_dir().parts[-2:] == (".cache", "rtaic")
    assert sorted(kodak.KODAK_SHA256) == [f"kodim{i:02d}.png" for i in range(1, 25)]
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in kodak.KODAK_SHA256.values())
