"""get_file against an HTTP server on 127.0.0.1 started here: cached downloads, sha256 /
md5 checks, truncated transfers, archive extraction and path traversal."""
import hashlib
import http.server
import io
import tarfile
import threading
import zipfile

import numpy as np
import pytest

from kiln.data import DownloadError, get_file
from kiln.utils import get_file as utils_get_file


class Server:
    """Serves ``files`` (path -> bytes); ``/drop/NAME`` announces the full length, sends
    half and closes the connection. Counts the requests per path."""

    def __init__(self):
        self.files, self.hits = {}, {}
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.hits[self.path] = outer.hits.get(self.path, 0) + 1
                drop = self.path.startswith("/drop/")
                body = outer.files.get(self.path[5:] if drop else self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:len(body) // 2] if drop else body)
                if drop:
                    self.wfile.flush()
                    self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.timeout = 5
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


PAYLOAD = np.arange(50000, dtype=np.int32).tobytes()
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_download_once_verify_and_cache(server, tmp_path):
    server.files["/d.bin"] = PAYLOAD
    path = get_file("d.bin", server.url + "/d.bin", file_hash=SHA, cache_dir=tmp_path,
                    timeout=10)
    assert path == str(tmp_path / "datasets" / "d.bin")
    assert open(path, "rb").read() == PAYLOAD
    again = utils_get_file("d.bin", server.url + "/d.bin", file_hash=SHA, cache_dir=tmp_path)
    assert again == path and server.hits["/d.bin"] == 1              # served from the cache
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    assert get_file("d.bin", server.url + "/d.bin", file_hash=md5, cache_dir=tmp_path) == path
    assert server.hits["/d.bin"] == 1
    (tmp_path / "datasets" / "d.bin").write_bytes(b"corrupted")       # a bad cached copy
    get_file("d.bin", server.url + "/d.bin", file_hash=SHA, cache_dir=tmp_path)
    assert server.hits["/d.bin"] == 2 and open(path, "rb").read() == PAYLOAD
    assert sorted(p.name for p in (tmp_path / "datasets").iterdir()) == ["d.bin"]


def test_hash_mismatch_deletes_and_reports(server, tmp_path):
    server.files["/d.bin"] = PAYLOAD
    with pytest.raises(ValueError, match="does not match the expected sha256 hash") as e:
        get_file("d.bin", server.url + "/d.bin", file_hash="0" * 64, cache_dir=tmp_path)
    assert SHA in str(e.value)
    assert list((tmp_path / "datasets").iterdir()) == []


def test_truncated_download_deletes_and_reports(server, tmp_path):
    server.files["/d.bin"] = PAYLOAD
    with pytest.raises(DownloadError, match="partial file was deleted"):
        get_file("d.bin", server.url + "/drop/d.bin", cache_dir=tmp_path, timeout=10)
    assert list((tmp_path / "datasets").iterdir()) == []
    with pytest.raises(DownloadError, match="404"):
        get_file("x.bin", server.url + "/missing", cache_dir=tmp_path, timeout=10)
    assert list((tmp_path / "datasets").iterdir()) == []


def zip_bytes(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def tar_bytes(members, links=()):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        for name, target in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            t.addfile(info)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_extract(server, tmp_path, kind):
    members = {"data/a.txt": b"alpha", "data/sub/b.csv": b"1,2\n"}
    body = zip_bytes(members) if kind == "zip" else tar_bytes(members)
    server.files[f"/arch.{kind}"] = body
    out = get_file(f"arch.{kind}", server.url + f"/arch.{kind}", extract=True,
                   file_hash=hashlib.sha256(body).hexdigest(), cache_dir=tmp_path)
    assert out == str(tmp_path / "datasets" / "arch")
    assert (tmp_path / "datasets" / "arch" / "data" / "a.txt").read_bytes() == b"alpha"
    assert (tmp_path / "datasets" / "arch" / "data" / "sub" / "b.csv").read_bytes() == b"1,2\n"


@pytest.mark.parametrize("kind,body", [
    ("zip", lambda: zip_bytes({"ok.txt": b"1", "../evil.txt": b"x"})),
    ("zip", lambda: zip_bytes({"/abs/evil.txt": b"x"})),
    ("tar.gz", lambda: tar_bytes({"ok.txt": b"1", "a/../../evil.txt": b"x"})),
    ("tar.gz", lambda: tar_bytes({"ok.txt": b"1"}, links=[("link", "/etc/passwd")])),
])
def test_extract_rejects_path_traversal(server, tmp_path, kind, body):
    server.files[f"/bad.{kind}"] = body()
    with pytest.raises(ValueError, match="refusing to extract"):
        get_file(f"bad.{kind}", server.url + f"/bad.{kind}", extract=True, cache_dir=tmp_path)
    left = sorted(p.name for p in (tmp_path / "datasets").iterdir())
    assert left == [f"bad.{kind}"]                  # nothing extracted, not even ok.txt
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "abs").exists()


def test_arguments_and_mnist_message(tmp_path):
    with pytest.raises(ValueError, match="origin"):
        get_file("a.bin", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="plain file name"):
        get_file("../a.bin", "http://127.0.0.1:1/a.bin", cache_dir=tmp_path)
    from kiln.datasets import mnist
    with pytest.raises(FileNotFoundError, match="mnist.npz"):
        mnist.load_data(cache_dir=tmp_path)
    rng = np.random.default_rng(0)
    arrays = dict(x_train=rng.integers(0, 255, (6, 28, 28), dtype=np.uint8),
                  y_train=np.arange(6, dtype=np.uint8), x_test=np.zeros((2, 28, 28), np.uint8),
                  y_test=np.ones(2, np.uint8))
    np.savez(tmp_path / "mnist.npz", **arrays)
    (xtr, ytr), (xte, yte) = mnist.load_data(tmp_path / "mnist.npz")
    assert np.array_equal(xtr, arrays["x_train"]) and np.array_equal(yte, arrays["y_test"])
