"""The checkpoint store: registration by content, hand-copied folders, parents."""

import json
import shutil
from pathlib import Path

from gainrl_ops.scoring.checkpoints import RECORD_FILE, LocalCheckpointStore
from gainrl_ops.scoring.models import checkpoint_fingerprint


def test_register_is_idempotent_by_content(tmp_path: Path, tiny_model_path: Path) -> None:
    store = LocalCheckpointStore(tmp_path / "store", settle_seconds=0)
    first = store.register(str(tiny_model_path), name="base", source="embedded")
    again = store.register(str(tiny_model_path), name="other-name", source="embedded")
    assert again == first and first.fingerprint == checkpoint_fingerprint(str(tiny_model_path))
    assert [r.name for r in store.records()] == ["base"]
    assert first.parameters and first.parameters > 0


def test_hand_copied_folder_is_taken_only_once_settled(tmp_path: Path, tiny_model_path: Path) -> None:
    store_root = tmp_path / "store"
    shutil.copytree(tiny_model_path, store_root / "copied")
    assert LocalCheckpointStore(store_root, settle_seconds=3600).records() == []
    (record,) = LocalCheckpointStore(store_root, settle_seconds=0).records()
    assert record.name == "copied" and record.source == "copied into the store"
    assert json.loads((store_root / "copied" / RECORD_FILE).read_text())["fingerprint"] == record.fingerprint


def test_a_trainer_registering_its_own_folder_keeps_the_parent(tmp_path: Path, tiny_model_path: Path) -> None:
    store = LocalCheckpointStore(tmp_path / "store", settle_seconds=0)
    base = store.register(str(tiny_model_path), name="base", source="embedded")
    child_dir = store.root / "run-epoch001"
    shutil.copytree(tiny_model_path, child_dir)
    config = json.loads((child_dir / "config.json").read_text())
    (child_dir / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-5}))
    child = store.register(str(child_dir), name=child_dir.name, source="run, epoch 1", parent=base.fingerprint)
    assert child.parent == base.fingerprint
    assert {r.name: r.parent for r in store.records()} == {"base": None, "run-epoch001": base.fingerprint}
    assert store.get(child.fingerprint).path == str(child_dir.resolve())
