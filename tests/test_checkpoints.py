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


def _copy(source: Path, target: Path, eps: float | None = None) -> Path:
    """`cp -p`: the copy keeps the source's (old) modification times."""
    shutil.copytree(source, target, copy_function=shutil.copy2)
    if eps is not None:  # other content, so another fingerprint
        config = json.loads((target / "config.json").read_text())
        (target / "config.json").write_text(json.dumps({**config, "rms_norm_eps": eps}))
    return target


def test_a_copied_folder_is_taken_after_two_looks_settle_seconds_apart(tmp_path: Path, tiny_model_path: Path) -> None:
    store = LocalCheckpointStore(tmp_path / "store", settle_seconds=10)
    _copy(tiny_model_path, store.root / "copied")
    first = store.discover(now=1000.0)
    assert first.registered == [] and store.records() == [], "old mtimes alone never make a folder settled"
    assert store.discover(first.arrivals, now=1005.0).registered == [], "5 s is not 10 s"
    (record,) = store.discover(first.arrivals, now=1010.0).registered
    assert record.name == "copied" and record.source == "copied into the store"
    assert json.loads((store.root / "copied" / RECORD_FILE).read_text())["fingerprint"] == record.fingerprint
    assert store.records() == [record] and store.discover(now=1020.0).registered == []


def test_a_change_between_looks_restarts_the_wait(tmp_path: Path, tiny_model_path: Path) -> None:
    store = LocalCheckpointStore(tmp_path / "store", settle_seconds=10)
    folder = _copy(tiny_model_path, store.root / "copied")
    first = store.discover(now=1000.0)
    (folder / "generation_config.json").write_text("{}")  # still being copied
    second = store.discover(first.arrivals, now=1011.0)
    assert second.registered == []
    assert len(store.discover(second.arrivals, now=1021.0).registered) == 1


def _sharded(source: Path, target: Path) -> tuple[Path, Path]:
    """`source`'s single safetensors file rewritten as an index and two shards, the second held back."""
    from safetensors.torch import load_file, save_file

    _copy(source, target, eps=1e-5)
    tensors = load_file(target / "model.safetensors")
    (target / "model.safetensors").unlink()
    names = sorted(tensors)
    halves = {"model-00001-of-00002.safetensors": names[: len(names) // 2], "model-00002-of-00002.safetensors": names[len(names) // 2 :]}
    (target / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": {n: f for f, ns in halves.items() for n in ns}}))
    first, second = (target / f for f in halves)
    save_file({n: tensors[n] for n in halves[first.name]}, first)
    held = target.parent / f".held-{second.name}"
    save_file({n: tensors[n] for n in halves[second.name]}, held)
    return second, held


def test_sharded_weights_arriving_with_a_gap_wait_for_the_last_shard(tmp_path: Path, tiny_model_path: Path) -> None:
    store = LocalCheckpointStore(tmp_path / "store", settle_seconds=10)
    second, held = _sharded(tiny_model_path, store.root / "sharded")
    first = store.discover(now=1000.0)
    later = store.discover(first.arrivals, now=1013.0)  # 13 s with no change, but a shard is missing
    assert later.registered == [] and "waiting for 1 of 2 weight shards" in later.problems[0]
    held.rename(second)
    arrived = store.discover(later.arrivals, now=1014.0)
    assert arrived.registered == []
    (record,) = store.discover(arrived.arrivals, now=1024.0).registered
    assert record.fingerprint == checkpoint_fingerprint(str(store.root / "sharded")), "both shards are in the fingerprint"


def test_a_corrupt_folder_is_reported_and_never_blocks_a_good_one(tmp_path: Path, tiny_model_path: Path) -> None:
    store = LocalCheckpointStore(tmp_path / "store", settle_seconds=0)
    broken = _copy(tiny_model_path, store.root / "broken", eps=1e-5)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a copy cut short
    _copy(tiny_model_path, store.root / "good")
    first = store.discover()
    second = store.discover(first.arrivals)
    assert [r.name for r in second.registered] == ["good"]
    (problem,) = second.problems
    assert "broken" in problem and "model.safetensors" in problem
    assert "broken" in second.arrivals, "retried on later looks"
    (garbage := store.root / "garbage").mkdir()
    (garbage / "config.json").write_text("{not json")
    third = store.discover(second.arrivals)
    assert len(third.problems) == 2 and third.registered == []


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
