"""dumpbed: a QEMU testbed for polled crash-dump drivers.

The flow, one sub-package each: scenario -> images -> machine -> capture -> reader ->
oracles -> report; `run` sequences one run, `cli` is the command line."""
