"""Admission webhook that keeps host-bound pods off immutable-OS node pools.

The pure core (api, config, workloads, policy, placement, mutation, admission) does no I/O;
the shells (cli, server, cluster, certs, manifests) talk to disks, sockets and the Kubernetes API.
"""

__version__ = "0.1.0"
