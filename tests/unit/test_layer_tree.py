"""Which checkpoint layers a lab keeps: those a checkpoint is in, and everything under them
and under the disks the machines write now (the rest go, but never a warm cache entry)."""

from __future__ import annotations

from xenlab.lab.lab import Lab
from xenlab.lab.rundir import CheckpointState, LabState, LayerState
from xenlab.spec import load_lab


def lab_with_layers(tmp_path, monkeypatch, layers: list[tuple[str, str | None, bool]], checkpoints: dict[str, str],
                    top: str | None) -> Lab:
    monkeypatch.setenv("XENLAB_RUN_DIR", str(tmp_path / "runs"))
    path = tmp_path / "lab.yaml"
    path.write_text("name: layers\nhosts:\n  h1:\n")
    lab = Lab(load_lab(path), str(path))
    lab.run.create()
    state = LabState("layers", str(path), {}, "tcg", "qemu64", "", 0.0, None)
    for layer_id, parent, cached in layers:
        directory = (tmp_path / "cache" if cached else lab.run.root / "layers") / layer_id
        directory.mkdir(parents=True)
        (directory / "h1-root.qcow2").write_bytes(b"x")
        state.layers.append(LayerState(layer_id, str(directory), parent, 0.0, cached))
    state.checkpoints = [CheckpointState(tag, 0.0, 0.0, layer) for tag, layer in checkpoints.items()]
    state.top_parent = top
    lab._state = state
    lab.save_state()
    return lab


def test_layers_under_a_checkpoint_or_the_running_disks_stay_and_the_rest_go(tmp_path, monkeypatch):
    lab = lab_with_layers(tmp_path, monkeypatch,
                          [("warm", None, True), ("a", "warm", False), ("b", "a", False), ("c", "a", False),
                           ("d", "c", False)],
                          {"ready": "warm", "mine": "b"}, top="a")
    lab._collect_layers()
    kept = {x.id for x in lab.state.layers}
    assert kept == {"warm", "a", "b"}
    assert not (lab.run.root / "layers" / "c").exists() and not (lab.run.root / "layers" / "d").exists()
    assert (lab.run.root / "layers" / "b").exists()


def test_a_deleted_checkpoint_frees_its_layer_unless_the_disks_rest_on_it(tmp_path, monkeypatch):
    lab = lab_with_layers(tmp_path, monkeypatch, [("warm", None, True), ("a", "warm", False)],
                          {"ready": "warm", "mine": "a"}, top="a")
    lab.checkpoint_delete("mine")
    assert {x.id for x in lab.state.layers} == {"warm", "a"}  # the machines write on top of it
    lab.checkpoint_delete("ready")
    lab.state.top_parent = None  # as after a power-on from the images (nothing rests on a layer)
    lab._collect_layers()
    assert lab.state.layers == []
    assert (tmp_path / "cache" / "warm").exists()  # a warm state belongs to the cache, not the run
    assert not (lab.run.root / "layers" / "a").exists()
