"""A loopback HTTP proxy in front of a real server, for failures a gateway causes mid-run."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


class Proxy:
    """Forwards every request to `upstream`. `refuse(status)` makes it answer POST /classify
    itself with that status from then on (a route removed or a permission revoked at the
    gateway); `forward()` restores it. With `reject_text`, a /classify body that contains it
    gets a 400 (a filter in front of the service). `classify_requests` counts POST /classify."""

    def __init__(self, upstream: str, reject_text: str | None = None) -> None:
        self.upstream = urlparse(upstream)
        self.reject_text = reject_text
        self.refusing: int | None = None
        self.classify_requests = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "POST" and self.path.startswith("/classify"):
                    with proxy._lock:
                        proxy.classify_requests += 1
                    status = proxy.refusing
                    if proxy.reject_text and proxy.reject_text.encode() in body:
                        status = 400
                    if status is not None:
                        payload = b'{"error": "refused by the proxy"}'
                        self.send_response(status)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                        return
                conn = http.client.HTTPConnection(
                    proxy.upstream.hostname, proxy.upstream.port, timeout=60
                )
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in HOP_BY_HOP | {"content-length"}:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:
                pass  # a client closing its keep-alive connection is no news

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def refuse(self, status: int) -> None:
        self.refusing = status

    def forward(self) -> None:
        self.refusing = None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
