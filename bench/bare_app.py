"""The floor for the gateway's cost: a bare Flask endpoint that reads the same
multipart upload and answers a small JSON, served by the same gunicorn settings."""
from flask import Flask, request

app = Flask(__name__)


@app.post("/api/v1/multimodal/analyze")
def upload():
    image = request.files["image"].read()
    prompt = request.form["prompt"]
    return {"status": "SUCCESS", "result": f"{len(image)} bytes, {len(prompt)} characters"}
