"""A small OpenID Connect identity provider on loopback, for the JWT tests.

It makes its own keys (RSA and EC P-256 with `cryptography`), publishes them as a JWKS at
`/jwks.json` and its discovery document at `/.well-known/openid-configuration`, and signs
tokens with PyJWT on request: an independent implementation of the tokens Symphony verifies.

  GET  /.well-known/openid-configuration
  GET  /jwks.json          the published keys; each fetch is counted
  GET  /fetches            how many times /jwks.json was fetched
  POST /rotate             publish the next RSA key (`rsa-2`), as a provider rotating keys
  POST /sign               {"kid", "claims"} -> a token signed by that key (RS256 or ES256)
  POST /confuse            {"claims"} -> an HS256 token whose HMAC secret is the RSA public
                           key's PEM: the algorithm-confusion attack

Prints `PORT <n>` once it listens.
"""

import base64
import hashlib
import hmac
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

KEYS = {
    "rsa-1": ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    "ec-1": ("ES256", ec.generate_private_key(ec.SECP256R1())),
    "rsa-2": ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
}
published = ["rsa-1", "ec-1"]
fetches = 0
lock = threading.Lock()


def jwk(kid):
    alg, key = KEYS[kid]
    algo = jwt.algorithms.RSAAlgorithm if alg.startswith("RS") else jwt.algorithms.ECAlgorithm
    out = json.loads(algo.to_jwk(key.public_key()))
    out.update(kid=kid, alg=alg, use="sig")
    return out


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Provider(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def base(self):
        return f"http://127.0.0.1:{self.server.server_port}"

    def do_GET(self):
        global fetches
        if self.path == "/.well-known/openid-configuration":
            self.reply(200, {"issuer": self.base(), "jwks_uri": self.base() + "/jwks.json"})
        elif self.path == "/jwks.json":
            with lock:
                fetches += 1
                keys = [jwk(kid) for kid in published]
            self.reply(200, {"keys": keys})
        elif self.path == "/fetches":
            with lock:
                self.reply(200, {"fetches": fetches})
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path == "/rotate":
            with lock:
                published.append("rsa-2")
            self.reply(200, {"published": published})
        elif self.path == "/sign":
            alg, key = KEYS[body["kid"]]
            token = jwt.encode(body["claims"], key, algorithm=alg, headers={"kid": body["kid"]})
            self.reply(200, token.encode(), "text/plain")
        elif self.path == "/confuse":
            pem = KEYS["rsa-1"][1].public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
            payload = b64(json.dumps(body["claims"]).encode())
            signing_input = f"{header}.{payload}".encode()
            signature = b64(hmac.new(pem, signing_input, hashlib.sha256).digest())
            self.reply(200, f"{header}.{payload}.{signature}".encode(), "text/plain")
        else:
            self.reply(404, {"error": "not found"})


server = ThreadingHTTPServer(("127.0.0.1", 0), Provider)
print(f"PORT {server.server_port}", flush=True)
try:
    server.serve_forever()
except KeyboardInterrupt:
    sys.exit(0)
