"""The compose test's target: HTTP on 80, HTTPS on 443 (/srv/cert.pem, self-signed for the
name `target`) and DNS on 53/udp answering A queries with this container's own address.
Standard library only; nothing here reaches out."""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = (
    b"<!doctype html><html><head><title>collectq deploy target</title></head>"
    b"<body style='background:#1e6fd9;color:white'><h1>collectq deploy target</h1></body></html>"
)


class Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    do_HEAD = do_GET


def own_address() -> bytes:
    return socket.inet_aton(socket.gethostbyname(socket.gethostname()))


def answer(query: bytes, address: bytes) -> bytes:
    """One A record (the address) for an A question, an empty NOERROR answer otherwise."""
    ident, flags = struct.unpack("!HH", query[:4])
    end = 12
    while query[end] != 0:
        end += query[end] + 1
    question = query[12 : end + 5]
    qtype = struct.unpack("!H", query[end + 1 : end + 3])[0]
    records = b""
    if qtype == 1:
        records = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + address
    header = struct.pack("!HHHHHH", ident, 0x8400 | (flags & 0x0100), 1, 1 if records else 0, 0, 0)
    return header + question + records


def serve_dns() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 53))
    address = own_address()
    while True:
        data, peer = sock.recvfrom(512)
        try:
            sock.sendto(answer(data, address), peer)
        except (IndexError, struct.error):
            continue


def serve_https() -> None:
    server = ThreadingHTTPServer(("0.0.0.0", 443), Page)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain("/srv/cert.pem", "/srv/key.pem")
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    threading.Thread(target=serve_dns, daemon=True).start()
    threading.Thread(target=serve_https, daemon=True).start()
    ThreadingHTTPServer(("0.0.0.0", 80), Page).serve_forever()
