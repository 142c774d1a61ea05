"""`tamx serve`: a live local web app over run stores, and over a model where there is one.

from tamx.pipeline.serve import make_app, ServerThread
app = make_app({"coco": "runs/coco"})
with ServerThread(app) as server:
    print(server.url)

Needs the `[serve]` extra (starlette, uvicorn, python-multipart); the model mode also needs
`[encode]`. Importing this package imports neither torch nor the encode stage.
"""

from .app import SERVE_CSP, ServeConfig, ServerThread, make_app, serve_forever

__all__ = ["SERVE_CSP", "ServeConfig", "ServerThread", "make_app", "serve_forever"]
