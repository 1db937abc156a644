"""A local stand-in for an AWS endpoint: checks each request's SigV4 signature with botocore.

Usage: aws_verify.py ACCESS_KEY SECRET_KEY [SESSION_TOKEN]
Prints the bound port on its first line, then serves until killed. A request whose signature
botocore reproduces gets 200 and a JSON body with what was checked; any other gets 403 with
botocore's canonical request, so a failure shows what differs. It is the verifier AWS runs, not
a second implementation of ours: botocore is the AWS SDK's own signer.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ACCESS, SECRET = sys.argv[1], sys.argv[2]
TOKEN = sys.argv[3] if len(sys.argv) > 3 else None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_any(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        auth = self.headers.get("authorization", "")
        result = {"method": self.command, "path": self.path, "body": body.decode("utf-8", "replace")}
        try:
            fields = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
            access, day, region, service, _ = fields["Credential"].split("/")
            signed = fields["SignedHeaders"].split(";")
            headers = {h: self.headers[h] for h in signed}
            req = AWSRequest(method=self.command, url="http://" + self.headers["host"] + self.path, data=body, headers=headers)
            req.context["timestamp"] = self.headers["x-amz-date"]
            signer = SigV4Auth(Credentials(ACCESS, SECRET, TOKEN), service, region)
            canonical = signer.canonical_request(req)
            want = signer.signature(signer.string_to_sign(req, canonical), req)
            ok = access == ACCESS and want == fields["Signature"] and (TOKEN is None or "x-amz-security-token" in signed)
            result.update(ok=ok, service=service, region=region, signed=signed, canonical=canonical)
        except Exception as e:  # a malformed or missing Authorization header
            result.update(ok=False, error=repr(e))
        out = json.dumps(result).encode()
        self.send_response(200 if result["ok"] else 403)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = handle_any


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
