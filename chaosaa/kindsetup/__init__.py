"""The kind path (DESIGN.md section 8): one kind cluster per region, the demo on top.

``chaosaa kind up`` creates the clusters from ``kind-configs/``, builds and loads the demo
image, routes every cluster's pod subnet into the others, deploys the demo node, router
and Prometheus from ``deploy/manifests/``, and writes a GameDay-shaped target file. Every
external command goes through :mod:`chaosaa.kindsetup.runner`.
"""
