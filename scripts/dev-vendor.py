#!/usr/bin/env python3
"""A stand-in for a BAA-covered LLM vendor in `make demo`: HTTPS on loopback with a certificate
from scripts/dev-certs.sh, answering every request with a small JSON reply naming what it got —
or, given BODY_FILE, with that file (the tests serve an IdP's JWKS this way).

    scripts/dev-vendor.py PORT CERT KEY [BODY_FILE]
"""
import http.server
import json
import ssl
import sys


class Vendor(http.server.BaseHTTPRequestHandler):
    def answer(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        if BODY_FILE:
            reply = open(BODY_FILE, "rb").read()
        else:
            reply = json.dumps({"vendor": self.headers.get("host"), "path": self.path,
                                "bytesReceived": len(body), "summary": "(a model's answer)"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST = answer

    def log_message(self, *args):
        pass


BODY_FILE = None


def main():
    global BODY_FILE
    port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    BODY_FILE = sys.argv[4] if len(sys.argv) > 4 else None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Vendor)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
