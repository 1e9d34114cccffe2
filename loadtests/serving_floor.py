"""The Ray Serve floor: the least any Serve app with this service's shape costs per request.

Two bare applications that :mod:`loadtests.serving_cost` deploys next to Collage on the same Ray,
so the path cost of an edit can be read against what Ray Serve itself costs on the same machine,
in the same run:

* ``one-hop`` (``/floor/one-hop/v1/edits``): proxy -> FastAPI ingress -> one ``@serve.batch``
  deployment through a handle, returning 1 KB. Collage's own shape without storage, auth, schemas
  or a model.
* ``no-hop`` (``/floor/no-hop/v1/edits``): proxy -> one deployment that batches the HTTP requests
  itself (no handle hop), returning the same 1 KB.

Both read the JSON body, as the ingress does, and batch like a family replica
(``max_batch_size`` 8, ``batch_wait_timeout_s`` 0.02).
"""

# No `from __future__ import annotations`: FastAPI must see the Request annotation itself (Serve pickles
# the class by value, without the module globals a string annotation would need).
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from ray import serve

PAYLOAD = bytes(range(256)) * 4  # the 1 KB every floor request gets back
BATCH = {"max_batch_size": 8, "batch_wait_timeout_s": 0.02}
ROUTES = {"one-hop": "/floor/one-hop", "no-hop": "/floor/no-hop"}

floor_api = FastAPI()


@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.25})
class FloorBatch:
    """Stands in for a family replica: batches what it is sent and returns 1 KB per item."""

    @serve.batch(**BATCH)
    async def __call__(self, items: list[Any]) -> list[bytes]:
        return [PAYLOAD for _ in items]


@serve.deployment(max_ongoing_requests=256, ray_actor_options={"num_cpus": 0.25})
@serve.ingress(floor_api)
class FloorIngress:
    """Stands in for Collage's ingress: parses the body, one handle call, answers with the bytes."""

    def __init__(self, batch: Any) -> None:
        self.batch = batch

    @floor_api.post("/v1/edits")
    async def edit(self, request: Request) -> Response:
        body = await request.json()
        return Response(await self.batch.remote(body), media_type="application/octet-stream")


@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0.25})
class FloorDirect:
    """The proxy straight to a batching replica: no ingress deployment, no handle hop."""

    @serve.batch(**BATCH)
    async def batched(self, bodies: list[Any]) -> list[bytes]:
        return [PAYLOAD for _ in bodies]

    async def __call__(self, request: Request) -> Response:
        return Response(await self.batched(await request.json()), media_type="application/octet-stream")


def deploy() -> dict[str, str]:
    """Run both floor apps on the current Serve instance; returns floor name -> route prefix.

    They log like Collage's deployments (``service.app.logging_options``), so the comparison is of
    the request path, not of Serve's logging settings."""
    from service.config import get_settings

    try:
        from service.app import logging_options
    except ImportError:  # a baseline revision from before serve_access_log: Serve's default logging, as it ran
        logging = {}
    else:
        logging = logging_options(get_settings())
    serve.run(
        FloorIngress.options(**logging).bind(FloorBatch.options(**logging).bind()), name="floor-one-hop", route_prefix=ROUTES["one-hop"]
    )
    serve.run(FloorDirect.options(**logging).bind(), name="floor-no-hop", route_prefix=ROUTES["no-hop"])
    return dict(ROUTES)


def delete() -> None:
    for name in ("floor-one-hop", "floor-no-hop"):
        serve.delete(name)
