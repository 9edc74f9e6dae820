"""The real Debian images through kubo: interoperation and peer-to-peer pulls.

Node A converts ``debian-bookworm``, ``debian-bookworm-rebuild`` and
``debian-trixie`` into its kubo (with a fresh embedded store in front, which
records exactly the blocks the converter wrote). The tests check the layer
DAGs with kubo's own commands (``refs -r``, ``get``, ``add``, ``dag import``
and ``dag export``). Node B, empty and connected to A alone on 127.0.0.1,
then unpacks the three images, pulling blocks from A. Its trees must equal
unpacks of the original images. For the rebuild, it must receive little more
than the blocks it lacked.
"""

from __future__ import annotations

import json
import os
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support import ProgramNotFoundError
from support.kubo import KuboNode

from fixtures.debian_images import ensure_image
from fixtures.tree import diff, snapshot
from ipcs_fs.car import CarReader
from ipcs_fs.cli import main
from ipcs_fs.ids import Cid
from ipcs_fs.layer.rebuild import read_layer_root
from ipcs_fs.store import EmbeddedStore
from ipcs_fs.store.walk import iter_dag_cids

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="unpacking needs root"),
]

IMAGES = ["debian-bookworm", "debian-bookworm-rebuild", "debian-trixie"]


@dataclass
class Image:
    """One real image: its original layout and its conversion on node A."""

    name: str
    layout: Path
    original: str
    converted: str
    roots: list[Cid]


@dataclass
class Converted:
    first: KuboNode
    second: KuboNode
    store: Path
    work: Path
    images: dict[str, Image] = field(default_factory=dict)


def _run(*argv: str) -> None:
    status = main(list(argv))
    assert status == 0, f"ipcs-fs {' '.join(argv)} exited with {status}"


def _layer_roots(layout: Path) -> list[Cid]:
    index = json.loads((layout / "index.json").read_bytes())
    manifest = _blob(layout, index["manifests"][0]["digest"])
    document = json.loads(manifest)
    return [
        Cid.parse(layer["annotations"]["org.ipcs-fs.layer.root-cid"])
        for layer in document["layers"]
    ]


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Converted]:
    try:
        first, second = KuboNode(), KuboNode()
    except ProgramNotFoundError as error:
        if os.environ.get("CI"):
            pytest.fail(str(error))
        pytest.skip(str(error))
    work = tmp_path_factory.mktemp("kubo-images")
    with first, second:
        first.connect(second)
        result = Converted(first, second, work / "a-store", work)
        for name in IMAGES:
            paths = ensure_image(name)
            target = work / "converted" / name
            _run(
                "--ipfs-api",
                first.api_multiaddr,
                "--store",
                str(result.store),
                "convert",
                "--file-granular",
                f"oci:{paths.layout_dir}:{paths.tag}",
                f"oci:{target}:latest",
            )
            result.images[name] = Image(
                name,
                paths.layout_dir,
                f"oci:{paths.layout_dir}:{paths.tag}",
                f"oci:{target}:latest",
                _layer_roots(target),
            )
        yield result


# Interoperation with kubo's commands


def test_refs_lists_every_block_the_converter_wrote(converted: Converted) -> None:
    seen: set[Cid] = set()
    with EmbeddedStore(converted.store) as written:
        for image in converted.images.values():
            for root in image.roots:
                refs = converted.first.output("refs", "-r", "--unique", str(root))
                layer = {root, *map(Cid.parse, refs.split())}

                assert layer == set(iter_dag_cids(written.get, [root]))
                seen |= layer
        assert seen == set(written.cids())


def _original_layer(layout: Path, index: int) -> tarfile.TarFile:
    index_json = json.loads((layout / "index.json").read_bytes())
    manifest = json.loads(_blob(layout, index_json["manifests"][0]["digest"]))
    digest = manifest["layers"][index]["digest"]
    return tarfile.open(layout / "blobs" / "sha256" / digest.removeprefix("sha256:"))


def _content(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    if member.islnk():
        member = tar.getmember(member.linkname)
    extracted = tar.extractfile(member)
    assert extracted is not None
    return extracted.read()


def test_ipfs_get_yields_the_original_files(
    converted: Converted, tmp_path: Path
) -> None:
    image = converted.images["debian-bookworm"]
    root = image.roots[0]
    with _original_layer(image.layout, 0) as tar:
        members = {member.name: member for member in tar.getmembers()}
        regular = [member for member in members.values() if member.isreg()]
        largest = max(regular, key=lambda member: member.size)
        small = sorted(member.name for member in regular if member.size < 65536)
        assert largest.size > 174 * 262144
        for name in [largest.name, *small[::500]]:
            output = tmp_path / name.replace("/", "_")
            converted.first.run("get", "-o", output, f"{root}/rootfs/{name}")

            assert output.read_bytes() == _content(tar, members[name])

        output = tmp_path / "apt"
        converted.first.run("get", "-o", output, f"{root}/rootfs/etc/apt")
        below = {
            name.removeprefix("etc/apt/"): member
            for name, member in members.items()
            if name.startswith("etc/apt/")
        }
        got = {
            str(path.relative_to(output)): path for path in sorted(output.rglob("*"))
        }
        assert sorted(got) == sorted(below)
        for name, member in below.items():
            if member.isdir():
                assert got[name].is_dir()
            elif member.issym():
                assert os.readlink(got[name]) == member.linkname
            else:
                assert got[name].read_bytes() == _content(tar, member)


def test_ipfs_add_gives_the_cids_ls_shows(
    converted: Converted, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = converted.images["debian-trixie"]
    capsys.readouterr()
    _run("--ipfs-api", converted.first.api_multiaddr, "ls", "--json", image.converted)
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    first_layer = str(image.roots[0].digest())
    listed = {
        row["path"]: row["cid"]
        for row in rows
        if row["layer"] == first_layer and row["type"] == "file"
    }
    with _original_layer(image.layout, 0) as tar:
        regular = sorted(
            (member for member in tar.getmembers() if member.isreg()),
            key=lambda member: member.size,
        )
        sample = [regular[0], *regular[-3:], *regular[:: len(regular) // 8]]
        for member in sample:
            path = tmp_path / "sample"
            path.write_bytes(_content(tar, member))
            added = converted.first.output("add", "--cid-version=1", "-Q", path)

            assert listed[member.name] == added, member.name
    assert regular[0].size == 0
    assert regular[-1].size > 174 * 262144


def test_car_round_trip_with_kubo(
    converted: Converted, kubo_node: KuboNode, tmp_path: Path
) -> None:
    image = converted.images["debian-bookworm"]
    layer = image.roots[1]
    ours = tmp_path / "ours.car"
    _run(
        "--ipfs-api",
        converted.first.api_multiaddr,
        "car",
        "export",
        str(layer),
        str(ours),
    )

    # kubo loads our CAR and pins its root...
    kubo_node.run("dag", "import", ours)
    pinned = kubo_node.output("pin", "ls", "--type=recursive", str(layer))
    assert pinned == f"{layer} recursive"
    refs = kubo_node.output("refs", "-r", "--unique", "--offline", str(layer))
    with open(ours, "rb") as file:
        blocks = [cid for cid, _ in CarReader(file, source=str(ours))]
    assert {layer, *map(Cid.parse, refs.split())} == set(blocks)

    # ...kubo's export of the layer is the same file, byte for byte...
    theirs = tmp_path / "theirs.car"
    theirs.write_bytes(converted.first.run("dag", "export", str(layer)).stdout)
    assert theirs.read_bytes() == ours.read_bytes()

    # ...and kubo's export loads into a fresh embedded store, pinned.
    fresh = tmp_path / "fresh"
    _run("--store", str(fresh), "car", "import", str(theirs))
    with EmbeddedStore(fresh) as store:
        assert list(store.pins()) == [layer]
        assert sorted(store.cids()) == sorted(blocks)
        root = read_layer_root(store.get, layer)
        assert root.diff_id == _diff_ids(image.layout)[1]


def test_car_of_an_image_pins_every_layer(
    converted: Converted, kubo_node: KuboNode, tmp_path: Path
) -> None:
    image = converted.images["debian-trixie"]
    path = tmp_path / "image.car"
    _run("--store", str(converted.store), "car", "export", image.converted, str(path))

    output = kubo_node.output("dag", "import", "--stats", path)

    for root in image.roots:
        assert f"Pinned root\t{root}\tsuccess" in output
    with open(path, "rb") as file:
        reader = CarReader(file, source=str(path))
        assert list(reader.roots) == image.roots
        count = sum(1 for _ in reader)
    assert f"Imported {count} blocks" in output


def _diff_ids(layout: Path) -> list[Any]:
    from ipcs_fs.ids import Digest

    index = json.loads((layout / "index.json").read_bytes())
    manifest = json.loads(_blob(layout, index["manifests"][0]["digest"]))
    config = json.loads(_blob(layout, manifest["config"]["digest"]))
    return [Digest.parse(text) for text in config["rootfs"]["diff_ids"]]


# Peer-to-peer pulls


@dataclass
class Pull:
    """What node B received while unpacking one image."""

    received: int
    missing_bytes: int
    missing_blocks: int
    seconds: float
    bitswap: dict[str, int]
    """Deltas of ``bitswap/stat`` counters, for the record."""


@dataclass
class Pulled:
    trees: dict[str, Path]
    references: dict[str, Path]
    pulls: dict[str, Pull]


def _post(node: KuboNode, path: str) -> Any:
    request = urllib.request.Request(node.api_url + path, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _received_from(node: KuboNode, peer: KuboNode) -> dict[str, int]:
    # libp2p's bandwidth meter folds new bytes into its totals once a second.
    time.sleep(2.5)
    counters = _post(node, "/bitswap/stat")
    received = {key: int(counters[key]) for key in _BITSWAP_COUNTERS}
    received["TotalIn"] = int(_post(node, f"/stats/bw?peer={peer.peer_id}")["TotalIn"])
    return received


_BITSWAP_COUNTERS = (
    "BlocksReceived",
    "DataReceived",
    "DupBlksReceived",
    "DupDataReceived",
    "MessagesReceived",
)


def _tar_stream_blocks(node: KuboNode, store: EmbeddedStore, roots: list[Cid]):
    """The blocks that an unpack must fetch: every tar-stream DAG. The layer
    roots come with the image."""
    needed: dict[bytes, int] = {}
    for root in roots:
        top = read_layer_root(store.get, root).tar_stream.cid
        refs = node.output("refs", "-r", "--unique", str(top)).split()
        for cid in [top, *map(Cid.parse, refs)]:
            needed[cid.hash_digest] = len(store.get(cid))
    return needed


def _held(node: KuboNode) -> set[bytes]:
    return {
        Cid.parse(line).hash_digest for line in node.output("refs", "local").split()
    }


@pytest.fixture(scope="module")
def pulled(converted: Converted) -> Pulled:
    first, second = converted.first, converted.second
    result = Pulled({}, {}, {})
    for name, image in converted.images.items():
        reference = converted.work / "reference" / name
        _run(
            "--store",
            str(converted.work / "unused"),
            "unpack",
            image.original,
            str(reference),
        )
        result.references[name] = reference

        with EmbeddedStore(converted.store) as store:
            needed = _tar_stream_blocks(first, store, image.roots)
        held = _held(second)
        missing = {key: size for key, size in needed.items() if key not in held}
        before = _received_from(second, first)
        started = time.monotonic()
        tree = converted.work / "pulled" / name
        _run(
            "--ipfs-api",
            second.api_multiaddr,
            "--store",
            str(converted.work / "b-store"),
            "unpack",
            image.converted,
            str(tree),
        )
        seconds = time.monotonic() - started
        after = _received_from(second, first)
        delta = {key: after[key] - before[key] for key in after}
        result.trees[name] = tree
        result.pulls[name] = Pull(
            delta.pop("TotalIn"), sum(missing.values()), len(missing), seconds, delta
        )
        print(f"pull of {name}: {result.pulls[name]}")
    return result


@pytest.mark.parametrize("name", IMAGES)
def test_pulled_tree_equals_reference(pulled: Pulled, name: str) -> None:
    differences = diff(snapshot(pulled.references[name]), snapshot(pulled.trees[name]))

    assert differences == []


def test_rebuild_pull_receives_only_missing_blocks(pulled: Pulled) -> None:
    pull = pulled.pulls["debian-bookworm-rebuild"]

    assert pull.missing_blocks > 0
    assert pull.received >= pull.missing_bytes
    assert pull.received <= 1.05 * pull.missing_bytes


@pytest.mark.parametrize("name", ["debian-bookworm", "debian-trixie"])
def test_full_pull_overhead_is_small(pulled: Pulled, name: str) -> None:
    pull = pulled.pulls[name]

    assert pull.missing_bytes > 200_000_000
    assert pull.missing_bytes <= pull.received <= 1.05 * pull.missing_bytes
