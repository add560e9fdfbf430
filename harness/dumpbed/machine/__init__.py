"""The QEMU process and its channels: launch and teardown, QMP, the serial console, the guest's result channel, the accelerator, where RAM sits."""
