"""Which process holds the other end of a loopback TCP connection (Linux's /proc), so that a server can answer
one process only: an execution environment's Runtime API answers its own sandbox, never another local process."""

from __future__ import annotations

import os
from pathlib import Path

TCP_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))


def supported() -> bool:
    return TCP_TABLES[0].is_file()


def _socket_inodes(client_port: int, server_port: int) -> set[str]:
    """The inodes of the sockets whose local port is client_port and remote port server_port (the client's end)."""
    local, remote = f":{client_port:04X}", f":{server_port:04X}"
    found = set()
    for table in TCP_TABLES:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[1].endswith(local) and fields[2].endswith(remote):
                found.add(fields[9])
    return found


def holds_connection(pid: int, client_port: int, server_port: int) -> bool:
    """Whether process pid holds the client end of the connection from client_port to server_port."""
    wanted = {f"socket:[{inode}]" for inode in _socket_inodes(client_port, server_port)}
    if not wanted:
        return False
    folder = f"/proc/{pid}/fd"
    try:
        descriptors = os.listdir(folder)
    except OSError:
        return False
    for fd in descriptors:
        try:
            if os.readlink(f"{folder}/{fd}") in wanted:
                return True
        except OSError:
            continue
    return False
