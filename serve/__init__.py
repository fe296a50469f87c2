"""Ray Serve application of ejc: one FastAPI ingress in front of an event-model deployment
(embed, predict, simulate, anomaly; batched) and a cube deployment (similar, relationships).

``serve.schemas`` (request/response models, conversions) and ``serve.api`` (routes, auth, limits)
import no Ray; ``serve.deployments`` holds the Serve wiring and ``serve.app`` the builder used by
``serve run serve/config.yaml``.
"""
