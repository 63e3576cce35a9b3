"""Deploy pipelines to Kubernetes: Argo Workflow + Triton manifests, their validation, kubectl, podman kube play."""
