"""Reading a local model's files (orchestrator/model_files.py): the fingerprint in every unit key."""

import shutil

from orchestrator.config import PROJECT_ROOT, ModelConfig
from orchestrator.model_files import model_fingerprint


def test_retrained_weights_of_the_same_size_are_a_new_fingerprint(tmp_path):
    model = tmp_path / "toy"
    shutil.copytree(PROJECT_ROOT / "models" / "toy-verifier", model)
    cfg = ModelConfig(name="toy", path=str(model))
    before = model_fingerprint(cfg)
    assert before == model_fingerprint(ModelConfig(name="again", path=str(model)))  # the name is not the files
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of the last weight: same names, same sizes, same config.json
    weights.write_bytes(bytes(data))
    assert model_fingerprint(cfg) != before
    assert model_fingerprint(ModelConfig(name="hub", path="org/not-here")) is None


def test_a_large_file_is_read_at_its_ends(tmp_path, monkeypatch):
    from orchestrator import model_files

    monkeypatch.setattr(model_files, "WHOLE_FILE_BYTES", 1000)
    monkeypatch.setattr(model_files, "END_BYTES", 100)
    (tmp_path / "config.json").write_text("{}")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(bytes(5000))
    cfg = ModelConfig(name="big", path=str(tmp_path))
    before = model_fingerprint(cfg)
    weights.write_bytes(bytes(2500) + b"\x01" + bytes(2499))  # the middle: not read
    assert model_fingerprint(cfg) == before
    weights.write_bytes(bytes(4999) + b"\x01")  # the last MiB (here 100 bytes): read
    assert model_fingerprint(cfg) != before
