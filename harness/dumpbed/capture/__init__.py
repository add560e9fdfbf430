"""Evidence from outside the guest: the snapshot at the crash, the device's write log and command log, the interrupt watch."""
