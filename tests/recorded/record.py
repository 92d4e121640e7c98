"""Record what a Java client really sends, to refresh the fixtures in this folder.

    python tests/recorded/record.py 9999 spring-ai-1-chat-image
    # point the client's base URL at http://127.0.0.1:9999 (or .../v1), make one call

Listens on 127.0.0.1:PORT, answers every POST with a tiny chat completion (or a
stream, when asked), and writes the first request as NAME.json: the path, the
headers worth keeping and the body, with the base64 image replaced by
$IMAGE_BASE64 (test_gateway_as_documented.py puts a fresh image there)."""
from __future__ import annotations

import json
import re
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

KEPT_HEADERS = ("authorization", "accept", "user-agent", "x-stainless-lang")
_BASE64_IMAGE = re.compile(r"(data:image/[\w.+-]+;base64,)[A-Za-z0-9+/=]+")


class Recorder(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        record = {"client": "recorded by tests/recorded/record.py", "path": self.path,
                  "headers": {k: v for k, v in self.headers.items() if k.lower() in KEPT_HEADERS},
                  "body": json.loads(_BASE64_IMAGE.sub(r"\1$IMAGE_BASE64", json.dumps(body)))}
        Path(__file__).with_name(self.server.name + ".json").write_text(json.dumps(record, indent=1) + "\n")
        chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": body.get("model", "x"),
                 "choices": [{"index": 0, "delta": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}
        if body.get("stream"):
            payload = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
            kind = "text/event-stream"
        else:
            payload = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": chunk["model"],
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                               "finish_reason": "stop"}],
                                  "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
            kind = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        print(f"recorded {self.path} as {self.server.name}.json", file=sys.stderr)


if __name__ == "__main__":
    server = HTTPServer(("127.0.0.1", int(sys.argv[1])), Recorder)
    server.name = sys.argv[2]
    server.handle_request()
