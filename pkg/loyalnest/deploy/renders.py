"""The named ways the chart is rendered: by the golden files, the kustomize base and tests."""

from __future__ import annotations

from loyalnest.deploy.helm import MONITORING_API, Render

CI_VALUES = "charts/loyalnest/ci"

# Checked in as tests/deploy/golden/<name>.yaml: a chart change shows up in review as a diff
# of what it renders.
GOLDEN: dict[str, Render] = {
    "default": Render(),
    "all-features": Render(
        values_files=(f"{CI_VALUES}/all-features-values.yaml",), api_versions=(MONITORING_API,)
    ),
}

# Every combination the offline tests validate (schemas for several Kubernetes versions,
# semantic checks).
COMBINATIONS: dict[str, Render] = {
    **GOLDEN,
    "external-backends": Render(values_files=(f"{CI_VALUES}/external-backends-values.yaml",)),
    "minimal": Render(values_files=(f"{CI_VALUES}/minimal-values.yaml",)),
    "kind": Render(values_files=("k8s/kind/values.yaml",)),
    "prod": Render(values_files=("k8s/values-prod.yaml",)),
    "otel-collector": Render(values_files=(f"{CI_VALUES}/otel-collector-values.yaml",)),
}

# The raw manifests under k8s/base (for SREs without Helm) are this render.
K8S_BASE = Render(values_files=("k8s/values-base.yaml",))
