"""Code generation from proto/: current code is kept, stale code is rebuilt."""

from __future__ import annotations

from pathlib import Path

from ipcs_fs.service import _generate
from ipcs_fs.service.protos import content_pb2, diff_pb2, leases_pb2, types_pb2


def test_generated_imports_stay_in_package() -> None:
    output = _generate.ensure_generated()

    for path in output.rglob("*.py"):
        text = path.read_text()
        assert "\nfrom containerd." not in text, path
        assert "\nimport containerd" not in text, path


def test_field_numbers_match_containerd() -> None:
    def numbers(message) -> dict[str, int]:
        return {field.name: field.number for field in message.DESCRIPTOR.fields}

    assert numbers(types_pb2.Descriptor) == {
        "media_type": 1,
        "digest": 2,
        "size": 3,
        "annotations": 5,
    }
    assert numbers(diff_pb2.ApplyRequest) == {
        "diff": 1,
        "mounts": 2,
        "payloads": 3,
        "sync_fs": 4,
    }
    assert numbers(diff_pb2.DiffRequest) == {
        "left": 1,
        "right": 2,
        "media_type": 3,
        "ref": 4,
        "labels": 5,
        "source_date_epoch": 6,
    }
    assert numbers(diff_pb2.DiffResponse) == {"diff": 3}
    assert numbers(content_pb2.WriteContentRequest) == {
        "action": 1,
        "ref": 2,
        "total": 3,
        "expected": 4,
        "offset": 5,
        "data": 6,
        "labels": 7,
    }
    assert numbers(leases_pb2.CreateRequest) == {"id": 1, "labels": 3}
    assert diff_pb2.DESCRIPTOR.services_by_name["Diff"].full_name == (
        "containerd.services.diff.v1.Diff"
    )


def test_stale_stamp_regenerates(tmp_path: Path, monkeypatch) -> None:
    output = tmp_path / "_proto"
    monkeypatch.setattr(_generate, "output_dir", lambda: output)
    _generate.ensure_generated()
    stamp = (output / ".stamp").read_text()
    (output / ".stamp").write_text("stale\n")
    (output / "marker").write_text("from the old generation")

    _generate.ensure_generated()

    assert (output / ".stamp").read_text() == stamp
    assert not (output / "marker").exists()
    assert (output / "containerd/services/diff/v1/diff_pb2.py").is_file()
