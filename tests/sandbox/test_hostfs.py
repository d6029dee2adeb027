"""open_beneath / workspace_parts: plain paths open on the host, anything that could leave the workspace does not."""

from __future__ import annotations

import os

import pytest

from swe_rl.sandbox.hostfs import open_beneath, workspace_parts


def test_workspace_parts():
    assert workspace_parts("/repo/a/b.py", "/repo") == ["a", "b.py"]
    assert workspace_parts("/repo/./a//b.py", "/repo") == ["a", "b.py"]
    for outside in ("/repo", "/repo/", "/repo/a/../../etc/passwd", "/tmp/x", "/repository/x", "/etc/passwd"):
        assert workspace_parts(outside, "/repo") is None, outside


def test_open_beneath_refuses_links_and_special_files(tmp_path):
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f.txt").write_text("inside")
    (tmp_path / "secret").write_text("outside")
    (root / "link").symlink_to(tmp_path / "secret")
    (root / "dirlink").symlink_to(tmp_path)
    os.mkfifo(root / "fifo")
    fd = open_beneath(root, ["d", "f.txt"], os.O_RDONLY)
    assert fd is not None and os.read(fd, 100) == b"inside"
    os.close(fd)
    assert open_beneath(root, ["link"], os.O_RDONLY) is None
    assert open_beneath(root, ["dirlink", "secret"], os.O_RDONLY) is None
    assert open_beneath(root, ["fifo"], os.O_RDONLY) is None
    assert open_beneath(root, ["d"], os.O_RDONLY) is None
    with pytest.raises(FileNotFoundError):
        open_beneath(root, ["nope", "x"], os.O_RDONLY)


def test_open_beneath_creates_directories_for_the_given_owner(tmp_path):
    uid = os.getuid() if os.getuid() != 0 else 1_000_000_123
    fd = open_beneath(tmp_path, ["a", "b", "c.txt"], os.O_WRONLY | os.O_CREAT, create_dirs_as=uid)
    assert fd is not None
    os.write(fd, b"x")
    os.close(fd)
    assert (tmp_path / "a" / "b" / "c.txt").read_text() == "x"
    assert {(tmp_path / p).stat().st_uid for p in ("a", "a/b", "a/b/c.txt")} == {uid}
