"""A multi-node Ray cluster on this machine with the service deployed on it, driven from a child process.

The child runs :class:`service.runtime.LocalCluster` (``ray.cluster_utils.Cluster``: a head and worker nodes, each
with its CPUs and custom resources) and answers the tests' commands over a pipe: where each replica runs, which
nodes are alive, remove a worker node. A child, because one process holds one Ray driver: in a full test run this
pytest process is connected already to the session's single-node service (tests/conftest.py ``service``).
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from typing import Any

STARTUP_TIMEOUT_S = 420  # seven torch replicas starting on two shared cores
COMMAND_TIMEOUT_S = 120


def _alive_nodes() -> list[dict[str, Any]]:
    import ray

    return [{"node_id": n["NodeID"], "resources": n["Resources"]} for n in ray.nodes() if n["Alive"]]


def _drive(conn, env: dict[str, str], head: dict[str, Any], workers: list[dict[str, Any]], system_config: dict[str, Any]) -> None:
    """The child: start the cluster and the service, answer commands until ``stop``, then stop everything."""
    os.environ.update(env)
    from service.runtime import LocalCluster

    service = LocalCluster(head, workers, system_config=system_config)
    try:
        service.start()
        conn.send(("ok", {"url": service.url, "head": service.cluster.head_node.node_id, "workers": [w.node_id for w in service.workers]}))
        while True:
            command, args = conn.recv()
            if command == "stop":
                break
            try:
                if command == "replicas":
                    result: Any = service.replicas()
                elif command == "nodes":
                    result = _alive_nodes()
                elif command == "remove_worker":  # by node id
                    (node,) = [w for w in service.workers if w.node_id == args[0]]
                    service.remove_worker(node)
                    result = None
                else:
                    raise ValueError(f"unknown command {command!r}")
                conn.send(("ok", result))
            except Exception:  # the test gets the traceback as its failure
                conn.send(("error", traceback.format_exc()))
    except Exception:
        conn.send(("error", traceback.format_exc()))
    finally:
        service.stop()
        conn.close()


class ClusterDriver:
    """The test side: start the child, send it commands, stop it (its cluster with it)."""

    def __init__(
        self, env: dict[str, str], head: dict[str, Any], workers: list[dict[str, Any]], system_config: dict[str, Any] | None = None
    ) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no Ray state of this one
        self.conn, child_conn = context.Pipe()
        self.process = context.Process(target=_drive, args=(child_conn, env, head, workers, system_config or {}), daemon=False)
        self.process.start()
        child_conn.close()
        started = self._answer(STARTUP_TIMEOUT_S)
        self.url: str = started["url"]
        self.head: str = started["head"]
        self.workers: list[str] = list(started["workers"])

    def _answer(self, timeout_s: float) -> Any:
        if not self.conn.poll(timeout_s):
            raise TimeoutError(f"the cluster's driver did not answer within {timeout_s:.0f} s")
        status, value = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"the cluster's driver failed:\n{value}")
        return value

    def call(self, command: str, *args: Any, timeout_s: float = COMMAND_TIMEOUT_S) -> Any:
        self.conn.send((command, args))
        return self._answer(timeout_s)

    def replicas(self) -> list[dict[str, Any]]:
        return self.call("replicas")

    def remove_worker(self, node_id: str) -> None:
        self.call("remove_worker", node_id)
        self.workers.remove(node_id)

    def stop(self, timeout_s: float = 120) -> None:
        if self.process.is_alive():
            try:
                self.conn.send(("stop", ()))
            except (BrokenPipeError, OSError):
                pass
            self.process.join(timeout_s)
        if self.process.is_alive():  # its cluster's processes are its children: the Cluster's reaper stops them
            self.process.terminate()
            self.process.join(30)
