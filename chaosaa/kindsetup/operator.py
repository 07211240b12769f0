"""``chaosaa kind operator``: the Helm chart on the kind clusters, as a user installs it.

On clusters ``chaosaa kind up`` made (whose demo image is also the operator's: one
deploy/Dockerfile): rebuild and ``kind load`` the image → ``helm upgrade --install`` the
chart in the hub (operator + agent DaemonSet) → in every other region the agent only
(``operator.enabled=false``) → per region (the hub too: its runs reach every region the
same way, by context) a kubeconfig Secret in the hub, from
``kind get kubeconfig --internal`` (the API server's address on the docker network, which
the hub's pods reach; 127.0.0.1 would be the pod itself) → the demo's Prometheus scrapes
the operator (job ``chaosaa-operator``), or the install is not done.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from chaosaa.kindsetup.setup import MANIFEST_SUBDIR, KindSetup, KindSetupError
from chaosaa.kindsetup.topology import NAMESPACE as DEMO_NAMESPACE
from chaosaa.kindsetup.topology import RegionCluster

NAMESPACE = "chaosaa-system"
RELEASE = "chaosaa"
CHART = Path("charts") / "chaosaa"
SECRET_KEY = "kubeconfig"
HELM_TIMEOUT = 300.0
#: the demo Prometheus's scrape job for the operator (chaosaa.kindsetup.manifests)
SCRAPE_JOB = "chaosaa-operator"
#: how long the first scrape of a freshly installed operator may take
SCRAPE_WAIT = 20.0
#: pod annotation with the image's content id (a rebuilt image rolls the pods)
IMAGE_ANNOTATION = "chaosaa.io/image-id"


def secret_name(region: str) -> str:
    """The kubeconfig Secret of a region, as experiments/kind/operator/*.yaml name it."""
    return f"chaosaa-kubeconfig-{region}"


def secret_manifest(region: str, kubeconfig: str, namespace: str = NAMESPACE) -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name(region),
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "chaosaa"},
        },
        "type": "Opaque",
        "stringData": {SECRET_KEY: kubeconfig},
    }
    return yaml.safe_dump(doc, sort_keys=False)


@dataclass
class OperatorInstall:
    setup: KindSetup
    helm: str = "helm"
    namespace: str = NAMESPACE
    build: bool = True
    image_id: str = ""

    def run(self) -> None:
        s = self.setup
        s.preflight(up=False)
        if self.build:
            s.build_image()
            s.load_image()
        self.image_id = self._image_id()
        hub = s.topology.hub
        others = [rc for rc in s.topology.regions if rc.region != hub.region]
        regions = list(s.topology.regions)
        self.helm_install(
            hub,
            operator=True,
            secrets=[secret_name(rc.region) for rc in regions],
            contexts=[rc.context for rc in regions],
        )
        for rc in others:
            self.helm_install(rc, operator=False, secrets=[], contexts=[])
        for rc in regions:
            self.kubeconfig_secret(hub, rc)
        self.scraped(hub)

    def scraped(self, hub: RegionCluster) -> None:
        """The demo's Prometheus scrapes the operator; restarted once if it does not.

        Prometheus scrapes by the Service's DNS name every second. A connection it opens
        in the instant between the Service's creation and kube-proxy programming its
        ClusterIP leaves the cluster un-NATed; where something on that path answers
        (this repository's build machines have an HTTP proxy there, answering 404),
        keep-alive pins the scrape to it for good. A restarted Prometheus dials again.
        """
        s = self.setup
        if s.runner.dry_run:
            s.progress(f"then: wait until the demo's Prometheus scrapes job {SCRAPE_JOB}")
            return
        s.progress(f"waiting until the demo's Prometheus scrapes the operator (job {SCRAPE_JOB})")
        problem = self._wait_scraped()
        if problem is None:
            return
        s.progress(f"the operator is not scraped ({problem}): restarting the demo's Prometheus")
        deploy = ["--namespace", DEMO_NAMESPACE, "deployment/chaosaa-prometheus"]
        kubectl = ["kubectl", "--context", hub.context, "rollout"]
        s.runner.run([*kubectl, "restart", *deploy], timeout=60)
        s.runner.run([*kubectl, "status", *deploy, "--timeout=120s"], timeout=150)
        problem = self._wait_scraped()
        if problem is not None:
            raise KindSetupError(
                f"the demo's Prometheus does not scrape the operator: {problem} "
                f"({s.topology.prometheus_url}/api/v1/targets?scrapePool={SCRAPE_JOB})"
            )

    def _wait_scraped(self) -> str | None:
        """None once job SCRAPE_JOB is up, else the last reason it was not."""
        s = self.setup
        url = f"{s.topology.prometheus_url}/api/v1/targets?scrapePool={SCRAPE_JOB}"

        def judge(answer: Any) -> str | None:
            targets = answer["data"]["activeTargets"]
            if any(t.get("health") == "up" for t in targets):
                return None
            errors = [str(t.get("lastError") or t.get("health")) for t in targets]
            return "; ".join(errors) or f"no target in job {SCRAPE_JOB}"

        return s.poll_json(url, s.clock() + SCRAPE_WAIT, judge)

    def _image_id(self) -> str:
        """The image's content id: in the pods' annotations, so that a rebuilt image under
        the same tag rolls them (helm alone sees no change and restarts nothing)."""
        s = self.setup
        argv = ["docker", "image", "inspect", "--format", "{{.Id}}", s.image]
        out = s.runner.run(argv, timeout=60)
        return "<image id>" if s.runner.dry_run else out.stdout.strip()

    def helm_install(
        self, rc: RegionCluster, *, operator: bool, secrets: list[str], contexts: list[str]
    ) -> None:
        s = self.setup
        repo, _, tag = s.image.rpartition(":")
        what = "operator and agent" if operator else "agent only"
        s.progress(f"helm install {RELEASE} in {rc.cluster} ({what}), namespace {self.namespace}")
        values = [
            f"image.repository={repo}",
            f"image.tag={tag}",
            "image.pullPolicy=Never",
            "agent.enabled=true",
            f"operator.enabled={'true' if operator else 'false'}",
        ]
        annotation = IMAGE_ANNOTATION.replace(".", "\\.")
        values += [f"{part}.podAnnotations.{annotation}={self.image_id}"
                   for part in ("operator", "agent")]  # fmt: skip
        if secrets:
            values.append("operator.kubeconfigSecrets={" + ",".join(secrets) + "}")
        if contexts:
            values.append("operator.allowedContexts={" + ",".join(contexts) + "}")
        argv = [
            self.helm,
            "upgrade",
            "--install",
            RELEASE,
            str(s.root / CHART),
            "--kube-context",
            rc.context,
            "--namespace",
            self.namespace,
            "--create-namespace",
            "--wait",
            "--timeout",
            f"{int(HELM_TIMEOUT)}s",
        ]
        for value in values:
            argv += ["--set", value]
        s.runner.run(argv, timeout=HELM_TIMEOUT + 30)

    def kubeconfig_secret(self, hub: RegionCluster, rc: RegionCluster) -> None:
        s = self.setup
        s.progress(
            f"Secret {secret_name(rc.region)} in {hub.cluster}: {rc.cluster}'s kubeconfig "
            "with its in-docker-network API address (kind get kubeconfig --internal)"
        )
        out = s.runner.run(
            ["kind", "get", "kubeconfig", "--internal", "--name", rc.cluster], timeout=60
        )
        path = s.state_dir / MANIFEST_SUBDIR / f"{secret_name(rc.region)}.yaml"
        if not s.runner.dry_run:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secret_manifest(rc.region, out.stdout, self.namespace))
            path.chmod(0o600)
        s.runner.run(["kubectl", "--context", hub.context, "apply", "-f", str(path)], timeout=60)
