"""Consul catalog sync: registers a pod's service in Consul (the `consul-sync` sidecar): in the
node's agent, or, agentless, in the servers' catalog (loyalnest.consul.catalog).

Inside the cluster, services find each other through Kubernetes DNS (headless Services). Consul
is for consumers outside the cluster: the sidecar registers its pod's gRPC endpoint with a health
check, re-registers it when Consul forgets it (a restarted agent without persisted state), and
deregisters it on SIGTERM.
"""

from loyalnest.consul.agent import AgentClient, AgentError, Registration
from loyalnest.consul.catalog import CatalogClient, ConsulPermissionDenied
from loyalnest.consul.sync import CatalogSync

__all__ = [
    "AgentClient",
    "AgentError",
    "CatalogClient",
    "CatalogSync",
    "ConsulPermissionDenied",
    "Registration",
]
