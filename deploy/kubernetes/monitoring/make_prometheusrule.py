"""Writes prometheusrule.yaml beside this file from deploy/prometheus/*.rules.yml, so the
Prometheus operator loads the very rules promtool tests (tests/test_kubernetes.py checks they match):
    python3 deploy/kubernetes/monitoring/make_prometheusrule.py
"""

from __future__ import annotations

from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
RULES = [HERE.parents[1] / "prometheus" / name for name in ("camwatch.rules.yml", "camwatch-fleet.rules.yml")]


def document() -> dict:
    groups = [g for path in RULES for g in yaml.safe_load(path.read_text())["groups"]]
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "camwatch", "labels": {"app.kubernetes.io/name": "camwatch"}},
            "spec": {"groups": groups}}


def _block(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


def main() -> None:
    yaml.SafeDumper.add_representer(str, _block)
    body = yaml.safe_dump(document(), sort_keys=False, width=110)
    head = ("# Generated from deploy/prometheus/camwatch.rules.yml and camwatch-fleet.rules.yml by\n"
            "#   python3 deploy/kubernetes/monitoring/make_prometheusrule.py\n# Edit those files, not this one.\n")
    (HERE / "prometheusrule.yaml").write_text(head + body)


if __name__ == "__main__":
    main()
