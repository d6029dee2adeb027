"""The host side of one `docker exec` with stdin attached: its socket, and its output as a plain pipe.

A non-tty exec multiplexes stdout and stderr into frames on one socket; `copy_frames` strips the
framing into a pipe, so the shell protocol's reader (shell.py) reads a container's shell exactly as
it reads a local one.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from typing import Any


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def copy_frames(sock: socket.socket, fd: int) -> None:
    """Copy the payload of a non-tty `docker exec` stream to `fd` until EOF; stdout and stderr alike.

    The daemon frames it: an 8-byte header (stream 1 or 2, three zero bytes, big-endian size), then the payload.
    """
    try:
        while True:
            _, size = struct.unpack(">BxxxL", _recv_exactly(sock, 8))
            data = _recv_exactly(sock, size)
            while data:
                data = data[os.write(fd, data):]
    except (EOFError, OSError):
        pass


class ExecStream:
    """One `docker exec` with stdin attached; its multiplexed output is copied into a pipe for ShellReader."""

    def __init__(self, api: Any, exec_id: str) -> None:
        self.api, self.exec_id = api, exec_id
        raw = api.exec_start(exec_id, detach=False, tty=False, stream=False, socket=True)
        self._keep = raw  # the SDK's wrapper owns the HTTP response; dropping it closes the socket
        self.sock: socket.socket = getattr(raw, "_sock", raw)
        self.read_fd, self._write_fd = os.pipe()
        self._pump = threading.Thread(target=self._copy, name=f"docker-exec-{exec_id[:12]}", daemon=True)
        self._pump.start()

    def _copy(self) -> None:
        try:
            copy_frames(self.sock, self._write_fd)
        finally:
            os.close(self._write_fd)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def exit_code(self) -> int:
        self._pump.join(timeout=5)
        code = self.api.exec_inspect(self.exec_id).get("ExitCode")
        return -1 if code is None else int(code)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._pump.join(timeout=5)
        try:
            os.close(self.read_fd)
        except OSError:
            pass
