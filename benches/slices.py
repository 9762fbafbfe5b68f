#!/usr/bin/env python3
"""An EndpointSlice file (a kubectl-shaped List) of N ready pods db-0…db-(N-1)
over three zones, 100 endpoints per slice as the EndpointSlice controller packs
them. Used by the bench scripts in this directory.

    python3 benches/slices.py N > slices.yaml
"""
import sys

n = int(sys.argv[1])
print("apiVersion: v1\nkind: List\nitems:")
for s in range(0, n, 100):
    print(f"- apiVersion: discovery.k8s.io/v1\n  kind: EndpointSlice\n  addressType: IPv4\n  metadata:\n    name: db-{s // 100}\n    namespace: default\n    labels:\n      kubernetes.io/service-name: db\n  endpoints:")
    for i in range(s, min(n, s + 100)):
        print(f"  - addresses: [\"10.{i // 65536}.{i // 256 % 256}.{i % 256}\"]\n    conditions: {{ready: true}}\n    targetRef: {{kind: Pod, name: db-{i}}}\n    zone: zone-{i % 3}")
