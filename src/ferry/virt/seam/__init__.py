"""The seam between ferry and hypervisors, split by what a host can be asked.

Each capability is one small Protocol; :class:`ferry.virt.base.HostConnection`
is all of them together. An engine part that needs one capability takes that
Protocol, so its tests and readers see exactly what it asks of a host.

==============  =====================================  ===============================
capability      protocol                               libvirt mixin (virt/)
==============  =====================================  ===============================
inventory       :class:`.inventory.Inventory`          ``libvirt_inventory.py``
power           :class:`.power.Power`                  ``libvirt_power.py``
volumes         :class:`.volumes.Volumes`              ``libvirt_storage.py``
migration       :class:`.migration.Migration`          ``libvirt_migration.py``
block copy      :class:`.blockcopy.BlockCopy`          ``libvirt_blockcopy.py``
CPU             :class:`.cpu.Cpu`                      ``libvirt_cpu.py``
probes          :class:`.probes.Probes`                ``libvirt_probes.py``
==============  =====================================  ===============================

The fake (:mod:`ferry.virt.fake`) implements every one; ``tests/unit/test_seam_contract.py``
runs one suite of promises against both.
"""
