"""The HTTPS service: /mutate and /validate (AdmissionReview v1), /healthz, /readyz, /metrics.

One job a module: `app` (routes), `service` (reviews through the core, counted and logged), `edge` (body
cap, content type, JSON decoding, error answers), `metrics`, `inventory` (the snapshot requests judge
with), `sources` (where it comes from) and `serve` (uvicorn, TLS, signals).
"""
