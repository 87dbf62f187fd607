"""Storage a real experiment can afford (issue 24 item 5): ``models.<m>.layers`` keeps the activations of
some layers only; the file records which, and every stage downstream copes or refuses by name."""

import h5py
import numpy as np
import pytest
import torch
import yaml

from nsp import storage, zoo
from nsp.pipeline import cli, config as nsp_config, datasets
from nsp.tracing import record
from nsp.tracing.table import LayerTable


def table():
    """input (2x3) -> hidden (4) -> out (3), and a skip from the input to out."""
    return LayerTable.build(["input", "hidden", "out"], ["input", "linear", "linear"], [""] * 3, [""] * 3,
                            [(2, 3), (4,), (3,)], [[], [0], [0, 1]])


def base(**model):
    return {"shard_size": 25, "datasets": {"digits": {"source": "sklearn-digits", "scale": 0.0625, "limit": 30}},
            "models": {"mlp": {"architecture": "digits_mlp", "dataset": "digits", "epochs": 0, **model}},
            "transforms": {"sem": {}}}


def test_names_and_patterns_select_layers_and_the_subset_table_is_their_layout():
    t = table()
    assert t.matching(["o*", "input"]) == (0, 2) and t.matching(["*"]) == (0, 1, 2)
    with pytest.raises(ValueError, match=r"^config key models.m.layers: 'fc\*' matches no layer; the layers are "
                                         r"input, hidden, out$"):
        t.matching(["hidden", "fc*"], "config key models.m.layers")
    sub = t.subset((0, 2))
    assert sub.names == ["input", "out"] and sub.offsets.tolist() == [0, 6, 9] and sub.parents == [(), (0,)]
    with pytest.raises(ValueError, match="ascending"):
        t.subset((2, 0))


def test_an_activations_file_records_its_stored_layers(tmp_path):
    t = table()
    values = np.arange(2 * 9, dtype=np.float32).reshape(2, 9)          # input (6) and out (3) of two samples
    storage.write_signals(tmp_path / "a.h5", storage.SignalBatch("activations", values, t, stored_layers=(0, 2)))
    back = storage.read_signals(tmp_path / "a.h5")
    assert back.layers == t and back.stored_layers == (0, 2) and np.array_equal(back.values, values)
    assert back.stored_table.names == ["input", "out"]
    with storage.open_signals(tmp_path / "a.h5") as opened:
        assert opened.stored_layers == (0, 2) and opened.stored_table.n_nodes == 9
    with h5py.File(tmp_path / "a.h5", "r") as f:                          # plain HDF5: which layers, by index
        assert f["stored_layers"][()].tolist() == [0, 2]
    full = storage.SignalBatch("activations", np.zeros((1, 13), np.float32), t)
    storage.write_signals(tmp_path / "full.h5", full)
    assert storage.read_signals(tmp_path / "full.h5").stored_layers is None
    with pytest.raises(ValueError, match="stored_layers: 2 layers of 9 nodes, but width 13"):
        storage.write_signals(tmp_path / "bad.h5", storage.SignalBatch("activations", np.zeros((1, 13)), t,
                                                                        stored_layers=(0, 2)))
    with pytest.raises(ValueError, match="only an activations file"):
        storage.write_signals(tmp_path / "bad.h5", storage.SignalBatch("spectra", np.zeros((1, 9)), t,
                                                                        stored_layers=(0, 2)))
    assert not (tmp_path / "bad.h5").exists()
    with h5py.File(tmp_path / "a.h5", "r+", locking=False) as f:         # a file edited elsewhere: refused by name
        f["stored_layers"][1] = 1
    storage.seal(tmp_path / "a.h5")
    with pytest.raises(storage.StorageError, match=r"a.h5: /values: 9 columns for the 10 nodes of its layer table "
                                                    r"\(its 2 stored layers\)"):
        storage.read_signals(tmp_path / "a.h5")


def test_a_layer_subset_needs_a_model_without_transforms():
    with pytest.raises(nsp_config.ConfigError, match=r"^config key models.mlp.layers: only these layers' activations "
                                                     r"are stored, but the model runs the transforms sem, which need "
                                                     r"every node; set models.mlp.transforms: \[\]"):
        nsp_config.validate(base(layers=["fc*"]))
    config = nsp_config.validate(base(layers=["fc*"], transforms=[]))
    assert nsp_config.transforms_of(config) == {"mlp": []} and nsp_config.series([]) == ["activations"]
    assert nsp_config.part(config, "collect-activations/mlp")["models"]["mlp"]["layers"] == ["fc*"]
    assert "layers" not in nsp_config.part(config, "extract-graph/mlp")["models"]["mlp"]   # the graph stays
    assert nsp_config.validate(base())["models"]["mlp"]["layers"] is None
    with pytest.raises(nsp_config.ConfigError, match=r"config key models.mlp.layers: \[\] should be non-empty"):
        nsp_config.validate(base(layers=[], transforms=[]))


def test_the_stages_keep_the_configured_layers_and_refuse_what_needs_every_node(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(base(layers=["input", "fc*"], transforms=[])))
    acts = tmp_path / "a.h5"
    assert cli.main(["collect-activations", "--config", str(cfg), "--model", "mlp", "--shard", "0",
                     "--out", str(acts)]) == 0
    log = capsys.readouterr().err
    assert "3 of 4 layers (models.mlp.layers), 106 of 138 values per sample" in log
    assert " MB per sample" in log and "forward/write " in log
    stored = storage.read_signals(acts)
    assert stored.stored_table.names == ["input", "fc1", "fc2"] and stored.values.shape == (25, 106)
    torch.manual_seed(0)                                 # the seeded random weights the stage used
    net = zoo.build("digits_mlp").eval()
    inputs, _ = datasets.load(nsp_config.load(cfg)["datasets"]["digits"])
    full = record(net, datasets.for_model(inputs[:25], (64,)), "children").values()
    keep = np.r_[0:64, 64:96, 128:138]                   # input, fc1, fc2; not act
    assert stored.layers.names == ["input", "fc1", "act", "fc2"] and np.array_equal(stored.values, full[:, keep])
    # statistics and pages of the stored layers
    assert cli.main(["summarize", "--config", str(cfg), "--model", "mlp", "--activations", str(acts),
                     "--out", str(tmp_path / "s.json")]) == 0
    assert '"layers": [\n    "input",\n    "fc1",\n    "fc2"\n  ]' in (tmp_path / "s.json").read_text()
    assert cli.main(["class-means", "--signals", str(acts), "--out", str(tmp_path / "m.h5")]) == 0
    assert storage.read_signals(tmp_path / "m.h5").stored_layers == (0, 1, 3)
    assert cli.main(["visualize", "--config", str(cfg), "--activations", str(acts),
                     "--out", str(tmp_path / "p.pdf")]) == 0
    assert "3 layers drawn" in capsys.readouterr().err
    # a transform needs every node: refused by name, nothing written
    assert cli.main(["extract-graph", "--config", str(cfg), "--model", "mlp", "--out", str(tmp_path / "g.h5")]) == 0
    assert cli.main(["compute-transformer", "--config", str(cfg), "--graph", str(tmp_path / "g.h5"),
                     "--transform", "sem", "--out", str(tmp_path / "t.h5")]) == 0
    capsys.readouterr()
    assert cli.main(["transform", "--config", str(cfg), "--activations", str(acts), "--transformer",
                     str(tmp_path / "t.h5"), "--out", str(tmp_path / "sp.h5")]) == 2
    assert "holds 3 of the 4 layers of its network (config key models.<model>.layers); a transform needs every " \
           "node" in capsys.readouterr().err
    assert not (tmp_path / "sp.h5").exists()
    # a pattern that matches no layer fails before anything is written
    cfg.write_text(yaml.safe_dump(base(layers=["conv*"], transforms=[])))
    assert cli.main(["collect-activations", "--config", str(cfg), "--model", "mlp", "--shard", "0",
                     "--out", str(tmp_path / "b.h5")]) == 2
    assert capsys.readouterr().err == ("nsp collect-activations: error: config key models.mlp.layers: 'conv*' "
                                       "matches no layer; the layers are input, fc1, act, fc2\n")
    assert not (tmp_path / "b.h5").exists()


def test_the_writer_writes_whole_bands_of_chunks_whatever_the_appends(tmp_path, monkeypatch):
    """Appends of fewer rows than a chunk holds would compress each chunk again on every append; the writer
    keeps them until the band is whole. Wide samples get shorter chunks, so a band stays small."""
    from nsp.storage import signals
    assert signals.sample_chunks(138, 4) == (32, 138) and signals.sample_chunks(5000, 8) == (32, 1024)
    assert signals.sample_chunks(12_208_706, 4) == (1, 65536)           # the full ViT: one row per chunk
    height, cols = signals.sample_chunks(1 << 20, 4)
    assert height * (1 << 20) * 4 <= signals.BAND_BYTES and height * cols * 4 == 1 << 18
    monkeypatch.setattr(signals, "BAND_BYTES", 8 * 300 * 4)                # 8 rows of 300 float32 per band
    t = LayerTable.build(["input"], ["input"], [""], [""], [(300,)], [[]])
    rng = np.random.default_rng(0)
    values, labels = rng.standard_normal((45, 300)).astype(np.float32), rng.integers(0, 3, 45)
    written = []
    write = signals.SignalWriter._write
    monkeypatch.setattr(signals.SignalWriter, "_write", lambda self, v, i, l: (written.append(len(i)),
                                                                               write(self, v, i, l)))
    with storage.SignalWriter(tmp_path / "a.h5", "activations", t, 300, with_labels=True) as out:
        for a, b in ((0, 3), (3, 4), (4, 21), (21, 22), (22, 45)):
            out.append(values[a:b], None, labels[a:b])
    assert written == [8, 8, 8, 16, 5]                   # whole bands, then the rest on close
    back = storage.read_signals(tmp_path / "a.h5")
    assert np.array_equal(back.values, values) and np.array_equal(back.labels, labels)
    assert back.sample_ids.tolist() == list(range(45))
    with h5py.File(tmp_path / "a.h5", "r") as f:
        assert f["values"].chunks == (8, 300)
    with pytest.raises(RuntimeError, match="stop"):       # rows kept back never reach a file that is discarded
        with storage.SignalWriter(tmp_path / "b.h5", "activations", t, 300) as out:
            out.append(values[:3])
            raise RuntimeError("stop")
    assert not (tmp_path / "b.h5").exists()
