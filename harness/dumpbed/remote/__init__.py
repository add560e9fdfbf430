"""Remote KVM hosts reached over SSH (docs/nightly.md, "The hosts file"): the hosts file
(hosts), the connection (ssh), preparing a bare host (prepare, probe) and running one cell on it
(execute). The controller never trusts a host's verdict: it recomputes it from the copied run."""
