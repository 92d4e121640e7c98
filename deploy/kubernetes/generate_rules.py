"""Writes operators/prometheus-rule.yaml, the Prometheus-operator form of
deploy/prometheus/alerts.yml (the one source of the alert rules).

    .venv/bin/python deploy/kubernetes/generate_rules.py           # or: make k8s-rules
    .venv/bin/python deploy/kubernetes/generate_rules.py --check   # exit 1 when out of date

A committed script rather than a Kustomize generator: Kustomize has none that wraps
a file into a custom resource's `spec`, and `kubectl apply -k` refuses files outside
the kustomization's folder. tests/test_kubernetes.py fails when the committed file
differs from what this writes, so an edited alerts.yml cannot be forgotten here.
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "deploy" / "prometheus" / "alerts.yml"
TARGET = Path(__file__).resolve().parent / "operators" / "prometheus-rule.yaml"
NAME = "llava"
# kube-prometheus-stack's Prometheus picks rules carrying its Helm release's name.
LABELS = {"release": "kube-prometheus-stack"}
HEADER = ("# Generated from deploy/prometheus/alerts.yml by deploy/kubernetes/generate_rules.py\n"
          "# (make k8s-rules): do not edit. Kubernetes-only changes are patches in the kustomizations.\n")


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper, value: str):
    # Multi-line PromQL stays readable as a literal block.
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def render() -> str:
    rules = yaml.safe_load(SOURCE.read_text())
    resource = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
                "metadata": {"name": NAME, "labels": LABELS}, "spec": {"groups": rules["groups"]}}
    return HEADER + yaml.dump(resource, Dumper=_Dumper, sort_keys=False, width=1000)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = TARGET.read_text() if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET.relative_to(ROOT)} is out of date: run make k8s-rules", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
