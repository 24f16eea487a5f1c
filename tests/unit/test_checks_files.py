"""Every file a VM reads: backing chains read from images, files outside the datastores,
formats read as declared, and the host paths a definition names."""

from dataclasses import replace

from preflight_fixtures import codes, facts, only, storage_move, vm

from ferry.checks.facts import ImageFacts, MoveRequest
from ferry.checks.files import files_inside, formats_declared, other_host_paths
from ferry.checks.finding import Status
from ferry.checks.report import preflight
from ferry.checks.vmotion import storage_shared
from ferry.engine.preflight import read_image
from ferry.model import Disk, FileUse, HostFile, VMState
from ferry.virt.base import ImageInfo
from ferry.virt.domxml import parse_domain, parse_volume

TOP = "/srv/shared/web1.qcow2"


def with_chain(*chain: str, read_as: str = "qcow2") -> dict[str, ImageFacts]:
    return {TOP: ImageFacts(TOP, read_as, tuple(chain))}


def test_a_backing_file_outside_the_datastores_is_refused_for_every_kind_of_move() -> None:
    cold = vm(state=VMState.SHUTOFF)
    requests = [
        (vm(), MoveRequest("web1", dest_host="host2")),
        (vm(), storage_move()),
        (vm(), MoveRequest("web1", dest_host="host2", dest_datastore="nfs")),
        (cold, MoveRequest("web1", dest_datastore="local", cold=True, disk_format="thick-lazy")),
        (cold, MoveRequest("web1", dest_host="host2", cold=True)),
    ]
    for the_vm, request in requests:
        rows = preflight(facts(vm=the_vm, request=request, images=with_chain("/etc/hostname")))
        row = only(rows, "storage.chain-outside")
        assert row.status is Status.ERROR, request
        assert row.objects["backing_file"] == "/etc/hostname" and row.objects["disk"] == "vda"
        assert "/etc/hostname" in row.message and "vda" in row.message


def test_a_path_climbing_out_of_a_datastore_is_outside_it() -> None:
    sneaky = "/srv/shared/../../etc/shadow"
    rows = files_inside(facts(images=with_chain(sneaky)))
    assert codes(rows) == ["storage.chain-outside"]


def test_backing_files_inside_the_datastores_pass_and_must_be_shared_for_a_host_move() -> None:
    rows = files_inside(facts(images=with_chain("/srv/shared/base.qcow2")))
    assert codes(rows, Status.PASS) == ["storage.chain-inside"]
    private = facts(images=with_chain("/var/lib/local/base.qcow2"))
    [row] = [r for r in storage_shared(private) if r.status is Status.ERROR]
    assert row.code == "storage.not-shared"
    assert row.objects["file"] == "/var/lib/local/base.qcow2"
    assert "blockpull" in row.remedy  # not a Storage VMotion: that refuses chains


def test_a_live_definitions_chain_counts_as_well_as_the_images() -> None:
    overlay = replace(vm().disks[0], backing_chain=("/tmp/elsewhere.qcow2",))
    rows = files_inside(facts(vm=vm(disks=(overlay,))))
    assert codes(rows) == ["storage.chain-outside"]


def test_an_unreadable_image_is_said_not_verified_and_a_loop_refused() -> None:
    rows = files_inside(facts(images={}))
    assert codes(rows, Status.WARNING) == ["storage.chain-unverified"]
    looped = {TOP: ImageFacts(TOP, "qcow2", ("/srv/shared/a.qcow2",), "a loop")}
    assert codes(files_inside(facts(images=looped))) == ["storage.chain-unreadable"]


def test_a_storage_move_judges_only_the_disks_it_moves() -> None:
    other = Disk("vdb", "disk", "file", "/srv/shared/web1-b.qcow2", "qcow2")
    images = {**with_chain("/etc/hostname"),
              other.source or "": ImageFacts(other.source or "", "qcow2")}
    the_vm = vm(disks=(vm().disks[0], other))
    rows = files_inside(facts(vm=the_vm, request=storage_move(disks=("vdb",)), images=images))
    assert codes(rows) == []


def test_a_conversion_reads_only_what_reads_as_declared() -> None:
    raw = Disk("vda", "disk", "file", "/srv/shared/web1.img", "raw")
    cold = vm(state=VMState.SHUTOFF, disks=(raw,))
    looks_qcow2 = {raw.source or "": ImageFacts(raw.source or "", "qcow2")}
    request = MoveRequest("web1", dest_datastore="local", cold=True, disk_format="thin")
    [row] = formats_declared(facts(vm=cold, request=request, images=looks_qcow2))
    assert row.code == "storage.format-mismatch" and row.status is Status.ERROR
    assert "declared raw" in row.message and "--format same" in row.remedy
    same = replace(request, disk_format="same")
    assert codes(formats_declared(facts(vm=cold, request=same, images=looks_qcow2))) == []
    honest = {raw.source or "": ImageFacts(raw.source or "", "raw")}
    assert codes(formats_declared(facts(vm=cold, request=request, images=honest))) == []
    assert codes(formats_declared(facts(vm=cold, request=request, images={}))) == \
        ["storage.format-unverified"]


def test_read_image_walks_the_chain_and_stops_outside_the_datastores() -> None:
    images = {
        "/d/top.qcow2": ImageInfo("/d/top.qcow2", "qcow2", "/d/mid.qcow2", "qcow2"),
        "/d/mid.qcow2": ImageInfo("/d/mid.qcow2", "qcow2", "/etc/base", "qcow2"),
    }
    found = read_image(images.get, "/d/top.qcow2", "qcow2")
    assert found.backing == ("/d/mid.qcow2", "/etc/base")
    assert found.stopped is not None and "/etc/base" in found.stopped
    # Declared raw: its bytes are data, whatever header they spell.
    assert read_image(images.get, "/d/top.qcow2", "raw").backing == ()
    assert read_image(images.get, "/d/top.qcow2", "raw").read_as == "qcow2"
    loop = {"/d/a": ImageInfo("/d/a", "qcow2", "/d/b", "qcow2"),
            "/d/b": ImageInfo("/d/b", "qcow2", "/d/a", "qcow2")}
    assert "loop" in (read_image(loop.get, "/d/a", "qcow2").stopped or "")
    # A backing file declared raw ends the chain, whatever its own bytes say.
    raw_base = {"/d/top": ImageInfo("/d/top", "qcow2", "/d/base", "raw"),
                "/d/base": ImageInfo("/d/base", "qcow2", "/etc/shadow", "raw")}
    assert read_image(raw_base.get, "/d/top", "qcow2").backing == ("/d/base",)


class Reads(dict[str, ImageInfo]):
    """The images of a host, and the paths a walk asked it to read."""

    def __init__(self, *images: ImageInfo) -> None:
        super().__init__((i.path, i) for i in images)
        self.read: list[str] = []

    def info(self, path: str) -> ImageInfo | None:
        self.read.append(path)
        return self.get(path)


def test_read_image_reads_each_file_only_as_its_declared_format() -> None:
    # A raw disk whose guest wrote a qcow2 header naming a host file: the host's storage
    # guesses qcow2 and shows the backing file, and none of that is believed or followed.
    lure = Reads(ImageInfo("/d/data.img", "qcow2", "/etc/hostname", "raw"),
                 ImageInfo("/etc/hostname", "raw"))
    found = read_image(lure.info, "/d/data.img", "raw")
    assert (found.backing, found.stopped, lure.read) == ((), None, ["/d/data.img"])
    # Declared qcow2, but its bytes are something else: its "backing file" is not taken.
    vmdk = Reads(ImageInfo("/d/v.qcow2", "vmdk", "/etc/shadow", "raw"))
    found = read_image(vmdk.info, "/d/v.qcow2", "qcow2")
    assert found.backing == () and "declared qcow2 but its bytes read as vmdk" in (
        found.stopped or "")
    # A backing file declared qcow2 whose bytes read otherwise ends the walk, refused.
    chain = Reads(ImageInfo("/d/top", "qcow2", "/d/base", "qcow2"),
                  ImageInfo("/d/base", "raw", "/etc/shadow", "raw"))
    found = read_image(chain.info, "/d/top", "qcow2")
    assert found.backing == ("/d/base",) and "/d/base is declared qcow2" in (
        found.stopped or "")
    # A header that names no format for its backing file: nothing is guessed, nor read.
    bare = Reads(ImageInfo("/d/top", "qcow2", "/d/base", None),
                 ImageInfo("/d/base", "qcow2", "/etc/shadow", "raw"))
    found = read_image(bare.info, "/d/top", "qcow2")
    assert found.backing == ("/d/base",) and bare.read == ["/d/top"]
    assert "does not declare the format of its backing file /d/base" in (found.stopped or "")


def test_a_raw_disk_spelling_a_qcow2_header_shows_no_backing_file_in_the_report() -> None:
    raw = Disk("vda", "disk", "file", "/srv/shared/web1.img", "raw")
    lure = Reads(ImageInfo(raw.source or "", "qcow2", "/etc/hostname", "raw"))
    image = read_image(lure.info, raw.source or "", "raw")
    for request in (MoveRequest("web1", dest_host="host2"), storage_move(),
                    MoveRequest("web1", dest_host="host2", dest_datastore="nfs", cold=True)):
        the_vm = vm(disks=(raw,), state=VMState.SHUTOFF if request.cold else VMState.RUNNING)
        rows = preflight(facts(vm=the_vm, request=request, images={raw.source or "": image}))
        assert not [r for r in rows if "/etc/hostname" in r.message + str(r.objects)], request
        assert not [r for r in rows if "backing_file" in r.objects], request
        assert {r.status for r in rows if r.code.startswith("storage.chain")} <= {
            Status.NOT_APPLICABLE}, request


def test_volume_xml_gives_the_format_read_and_the_backing_file() -> None:
    xml = """<volume type='file'><name>o.qcow2</name>
      <target><path>/d/o.qcow2</path><format type='qcow2'/></target>
      <backingStore><path>/var/tmp/x</path><format type='raw'/></backingStore></volume>"""
    assert parse_volume(xml) == ImageInfo("/d/o.qcow2", "qcow2", "/var/tmp/x", "raw")


def test_every_host_path_of_a_definition_is_found_with_its_use() -> None:
    xml = """<domain type='qemu'><name>v</name><uuid>1</uuid><memory>1024</memory>
    <os><type>hvm</type><loader readonly='yes' type='pflash'>/usr/share/OVMF/CODE.fd</loader>
      <nvram>/srv/shared/v_VARS.fd</nvram><kernel>/srv/shared/k</kernel>
      <dtb>/srv/shared/v.dtb</dtb></os>
    <devices>
      <filesystem type='mount'><source dir='/srv/shared/data'/><target dir='data'/></filesystem>
      <serial type='file'><source path='/var/log/v.serial'/><target port='0'/></serial>
      <serial type='pty'><log file='/srv/shared/v.log'/><target port='1'/></serial>
      <channel type='unix'><source mode='bind' path='/run/v.sock'/></channel>
      <disk type='file' device='disk'><source file='/srv/shared/v.qcow2'/>
        <backingStore type='file'><source file='/srv/shared/b1.qcow2'/>
          <backingStore type='file'><source file='/srv/shared/b2.qcow2'/></backingStore>
        </backingStore><target dev='vda'/></disk>
    </devices></domain>"""
    parsed = parse_domain(xml, "h", VMState.RUNNING)
    assert parsed.disks[0].backing_chain == ("/srv/shared/b1.qcow2", "/srv/shared/b2.qcow2")
    uses = {f.path: f.use for f in parsed.host_files}
    assert uses == {
        "/usr/share/OVMF/CODE.fd": FileUse.FIRMWARE, "/srv/shared/v_VARS.fd": FileUse.READ,
        "/srv/shared/v.dtb": FileUse.READ, "/srv/shared/data": FileUse.READ,
        "/var/log/v.serial": FileUse.WRITTEN, "/srv/shared/v.log": FileUse.WRITTEN,
        "/run/v.sock": FileUse.DEVICE,
    }
    read = [path for _, path in parsed.files()]
    assert {"/srv/shared/k", "/srv/shared/v_VARS.fd", "/srv/shared/data"} <= set(read)


def test_content_files_must_be_shared_and_the_rest_is_said_per_host() -> None:
    the_vm = vm(host_files=(
        HostFile("NVRAM", "/var/lib/nvram/web1_VARS.fd", FileUse.READ),
        HostFile("firmware", "/usr/share/OVMF/CODE.fd", FileUse.FIRMWARE),
        HostFile("serial log", "/var/log/web1.log", FileUse.WRITTEN),
        HostFile("channel unix", "/run/web1.sock", FileUse.DEVICE)))
    shared = storage_shared(facts(vm=the_vm))
    [nvram] = [r for r in shared if r.objects["file"] == "/var/lib/nvram/web1_VARS.fd"]
    assert nvram.code == "storage.unmanaged"
    rows = other_host_paths(facts(vm=the_vm))
    assert [(r.code, r.status) for r in rows] == [
        ("storage.firmware-per-host", Status.WARNING), ("storage.output-file", Status.WARNING),
        ("storage.host-device", Status.WARNING)]
    assert all(r.remedy for r in rows)
