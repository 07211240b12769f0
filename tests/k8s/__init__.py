"""The k8s tier: real per-region control planes (etcd, kube-apiserver, ...)."""
