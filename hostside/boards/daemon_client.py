"""Talking to ``device-agent serve`` over a stream (an SSH channel or a socket).

Every read has a deadline and checks that the link is still up, so a dead board surfaces as
:class:`LinkDown` instead of a read that blocks forever.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Callable, Dict, Optional

from device_agent.protocol import MAX_LINE_BYTES, ProtocolError, decode, encode
from hostside.boards.transport import CommandTimeout, LinkDown

READ_SLICE_S = 0.5


class DaemonClient:
    """One connection to the daemon; ``token`` (read from the board over SSH) authenticates it."""

    def __init__(self, stream: Any, is_alive: Callable[[], bool], board_name: str, token: Optional[str] = None) -> None:
        self.stream = stream
        self.is_alive = is_alive
        self.board_name = board_name
        self.token = token
        self._buffer = bytearray()
        stream.settimeout(READ_SLICE_S)

    def request(self, message: Dict[str, Any], timeout_s: float) -> Dict[str, Any]:
        """Send one request and wait for its response line until ``timeout_s``."""
        if self.token is not None:
            message = {**message, "token": self.token}
        try:
            self.stream.sendall(encode(message))
        except (OSError, EOFError) as exc:
            raise LinkDown(f"sending to the agent on {self.board_name} failed: {exc}") from None
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            if time.monotonic() > deadline:
                raise CommandTimeout(f"the agent on {self.board_name} did not answer within {timeout_s:.0f} s")
            try:
                chunk = self.stream.recv(1 << 16)
            except socket.timeout:
                if not self.is_alive():
                    raise LinkDown(f"the connection to {self.board_name} dropped while waiting for the agent") from None
                continue
            except (OSError, EOFError) as exc:
                raise LinkDown(f"reading from the agent on {self.board_name} failed: {exc}") from None
            if not chunk:
                raise LinkDown(f"the agent on {self.board_name} closed the connection")
            self._buffer += chunk
            if len(self._buffer) > MAX_LINE_BYTES:
                raise LinkDown(f"the agent on {self.board_name} sent an oversized message")
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        try:
            return decode(line)
        except ProtocolError as exc:
            raise LinkDown(f"the agent on {self.board_name} answered something unreadable: {exc}") from None

    def close(self) -> None:
        try:
            self.stream.close()
        except OSError:
            pass
