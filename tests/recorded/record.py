"""Record what a Java client really sends, to refresh the fixtures in this folder.

    python tests/recorded/record.py 9999 spring-ai-1-chat-image [--client TEXT] [--out DIR]
    # point the client's base URL at http://127.0.0.1:9999 (or .../v1), make one call

Listens on 127.0.0.1:PORT (0: any free port), prints `listening on PORT` once it
does, answers one POST with a tiny chat completion (or a stream, when asked), and
writes that request as NAME.json in DIR (default: this folder): the path, the
headers worth keeping and the body, with the base64 image replaced by
$IMAGE_BASE64 (test_gateway_as_documented.py puts a fresh image there). The Java
integration tests (clients/java, RecordedRequestsIT) run it for each library."""
from __future__ import annotations

import argparse
import json
import re
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

KEPT_HEADERS = ("authorization", "accept", "user-agent", "x-stainless-lang")
_BASE64_IMAGE = re.compile(r"(data:image/[\w.+-]+;base64,)[A-Za-z0-9+/=]+")


def _answer_for(response_format: dict) -> str:
    """An answer the client can read back: the smallest JSON its schema allows when it asked for JSON."""
    if response_format.get("type") == "json_schema":
        return json.dumps(_smallest(response_format.get("json_schema", {}).get("schema", {})))
    return "{}" if response_format.get("type") == "json_object" else "ok"


def _smallest(schema: dict):
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "object":
        return {name: _smallest(schema.get("properties", {}).get(name, {})) for name in schema.get("required", [])}
    return {"array": [], "string": "", "integer": 0, "number": 0, "boolean": False, "null": None}.get(kind, {})


class Recorder(BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self._body())
        record = {"client": self.server.client, "path": self.path,
                  "headers": {k: v for k, v in self.headers.items() if k.lower() in KEPT_HEADERS},
                  "body": json.loads(_BASE64_IMAGE.sub(r"\1$IMAGE_BASE64", json.dumps(body)))}
        (self.server.out / (self.server.name + ".json")).write_text(json.dumps(record, indent=1) + "\n")
        content = _answer_for(body.get("response_format") or {})
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": body.get("model", "x"),
                 "choices": [{"index": 0, "delta": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}
        if body.get("stream"):
            events = [chunk]
            if (body.get("stream_options") or {}).get("include_usage"):
                events.append({**chunk, "choices": [], "usage": usage})
            payload = "".join(f"data: {json.dumps(event)}\n\n" for event in events).encode() + b"data: [DONE]\n\n"
            kind = "text/event-stream"
        else:
            payload = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": chunk["model"],
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                               "finish_reason": "stop"}],
                                  "usage": usage}).encode()
            kind = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        print(f"recorded {self.path} as {self.server.name}.json", file=sys.stderr)

    def _body(self) -> bytes:
        """The request body, sized or chunked (a client streaming its body sends no Content-Length)."""
        if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
            return self.rfile.read(int(self.headers["Content-Length"]))
        body = b""
        while size := int(self.rfile.readline().split(b";")[0], 16):
            body += self.rfile.read(size)
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
            pass
        return body


def main(argv: list[str]) -> None:
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("port", type=int)
    args.add_argument("name")
    args.add_argument("--client", default="recorded by tests/recorded/record.py", help="what sent it")
    args.add_argument("--out", type=Path, default=Path(__file__).parent, help="where NAME.json goes")
    options = args.parse_args(argv)
    server = HTTPServer(("127.0.0.1", options.port), Recorder)
    server.name, server.client, server.out = options.name, options.client, options.out
    print(f"listening on {server.server_address[1]}", flush=True)
    server.handle_request()


if __name__ == "__main__":
    main(sys.argv[1:])
