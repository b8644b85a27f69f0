"""Kubernetes: render an experiment as a ConfigMap and a KubeRay RayJob, and submit, watch and
delete it with the official client. No ray or torch."""
