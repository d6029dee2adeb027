"""The `docker exec` stream's framing, over a real socket pair (the daemon's wire format, no daemon)."""

from __future__ import annotations

import os
import socket
import struct
import threading

from swe_rl.sandbox.docker_exec import copy_frames


def test_copy_frames_demultiplexes_the_exec_stream():
    a, b = socket.socketpair()
    r, w = os.pipe()
    copier = threading.Thread(target=lambda: (copy_frames(b, w), os.close(w)))
    copier.start()
    payloads = [(1, b"out-1 "), (2, b"err-1 "), (1, b"x" * 100_000), (2, b"")]
    wire = b"".join(struct.pack(">BxxxL", s, len(p)) + p for s, p in payloads)
    for i in range(0, len(wire), 7):  # frames split at odd places, as TCP may deliver them
        a.sendall(wire[i:i + 7])
    a.close()
    got = b""
    while chunk := os.read(r, 1 << 16):
        got += chunk
    copier.join(5)
    os.close(r)
    b.close()
    assert got == b"".join(p for _, p in payloads)
