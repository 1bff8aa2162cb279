"""Kubernetes delivery tooling: files the Helm chart carries that are generated from code.

`python -m loyalnest.deploy --help` lists the generators (the gateway's Envoy bootstrap and
descriptor set inside the chart, the raw kustomize base, the golden renders). Every generator
has a `--check` mode that the offline tests in tests/deploy use, so a generated file that no
longer matches its source fails the test suite instead of drifting.
"""
