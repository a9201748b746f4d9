"""`gunicorn -c gunicorn.conf.py bench.ceiling.wsgi:app`: what Flask under our gunicorn
settings answers at best; bench/run.py reads every /healthz against it."""

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/healthz")
def healthz():
    # The services' answer, headers included (resource_server/health.py).
    return jsonify(status="ok"), 200, {"Cache-Control": "no-store"}
