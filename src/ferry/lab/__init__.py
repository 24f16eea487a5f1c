"""The lab: several libvirt hosts on one machine, for demos and integration tests."""
