"""Consul catalog sync: registers a pod's service in a Consul agent (the `consul-sync` sidecar).

Inside the cluster, services find each other through Kubernetes DNS (headless Services). Consul
is for consumers outside the cluster: the sidecar registers its pod's gRPC endpoint with a gRPC
health check in the node's Consul agent, re-registers it when the agent forgets it (a restarted
agent without persisted state), and deregisters it on SIGTERM.
"""

from loyalnest.consul.agent import AgentClient, AgentError, Registration
from loyalnest.consul.sync import CatalogSync

__all__ = ["AgentClient", "AgentError", "CatalogSync", "Registration"]
