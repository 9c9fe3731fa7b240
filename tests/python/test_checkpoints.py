"""Checkpoint reading: the three layouts, wrappers, safetensors, strictness, bad files."""

import argparse
import json
import os
import struct

import pytest
import torch

from perception_retrieval import checkpoints, pe_core, safetensors
from perception_retrieval.checkpoints import CheckpointError

TINY = "test-tiny"


@pytest.fixture(scope="module")
def tiny():
    return pe_core.build(TINY, seed=11)


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 56, 56, generator=torch.Generator().manual_seed(3))


def text_tower_keys(width=16):
    """Unprefixed text keys of the official CLIP file; they collide with image names."""
    return {
        "positional_embedding": torch.randn(32, width),
        "transformer.resblocks.0.attn.in_proj_weight": torch.randn(3 * width, width),
        "token_embedding.weight": torch.randn(100, width),
        "ln_final.weight": torch.ones(width),
        "text_projection": torch.randn(width, width),
        "logit_scale": torch.tensor(4.6),
    }


def write_layouts(state, directory):
    """The same weights in the official layouts and formats; returns {description: path}.
    timm's and open_clip's own files, written by their own code, are in test_peers.py."""
    files = {}

    def save(name, obj, **kwargs):
        path = os.path.join(directory, name)
        torch.save(obj, path, **kwargs)
        files[name] = path

    clip = {"visual." + k: v for k, v in state.items()}
    clip.update(text_tower_keys())
    save("official_clip.pt", clip)
    save("official_clip_wrapped_module.pt", {"state_dict": {"module." + k: v for k, v in clip.items()},
                                             "epoch": 3})
    save("official_clip_weights.pt", {"weights": clip})
    save("bare.pt", dict(state))
    save("bare_legacy.pt", dict(state), _use_new_zipfile_serialization=False)
    path = os.path.join(directory, "bare.safetensors")
    safetensors.save_file(dict(state), path)
    files["bare.safetensors"] = path
    return files


def test_every_layout_loads_and_gives_identical_embeddings(tiny, images, tmp_path):
    state = tiny.state_dict()
    with torch.no_grad():
        expected = tiny(images)
    layouts = {}
    for name, path in write_layouts(state, str(tmp_path)).items():
        _, layouts[name] = checkpoints.read_vision_state_dict(path)
        model = pe_core.load_checkpoint(path, config=TINY)
        assert not model.training
        for key, value in state.items():
            assert torch.equal(model.state_dict()[key], value), (name, key)
        with torch.no_grad():
            assert torch.equal(model(images), expected), name
    assert layouts == {
        "official_clip.pt": "official-clip", "official_clip_wrapped_module.pt": "official-clip",
        "official_clip_weights.pt": "official-clip", "bare.pt": "bare", "bare_legacy.pt": "bare",
        "bare.safetensors": "bare",
    }


def test_safetensors_library_and_own_reader_agree(tiny, tmp_path, monkeypatch):
    """Where the safetensors package is installed it reads the files; the own reader is the
    fallback (Debian stack) and must give the same tensors for the library's files."""
    library = checkpoints._safetensors_library()
    if library is None:
        pytest.skip("the safetensors package is not installed (Debian stack): the own reader is in use")
    path = str(tmp_path / "model.safetensors")
    tensors = dict(tiny.state_dict())
    tensors["bf16"] = torch.randn(3, 2).to(torch.bfloat16)
    library.save_file(tensors, path, metadata={"format": "pt"})
    by_library = checkpoints.read_checkpoint_file(path)
    monkeypatch.setattr(checkpoints, "_safetensors_library", lambda: None)
    by_own_reader = checkpoints.read_checkpoint_file(path)
    assert set(by_library) == set(by_own_reader) == set(tensors)
    for name, tensor in tensors.items():
        assert by_library[name].dtype == by_own_reader[name].dtype == tensor.dtype
        assert torch.equal(by_library[name], tensor) and torch.equal(by_own_reader[name], tensor), name


def test_timm_names_follow_the_spec(tiny):
    """Key mapping written out from docs/model.md, independent of the converter."""
    state = tiny.state_dict()
    timm = checkpoints.official_to_timm(state)
    width = tiny.config.width
    assert timm["cls_token"].shape == (1, 1, width)
    assert torch.equal(timm["cls_token"].reshape(-1), state["class_embedding"])
    assert torch.equal(timm["pos_embed"][0], state["positional_embedding"])
    assert torch.equal(timm["patch_embed.proj.weight"], state["conv1.weight"])
    assert torch.equal(timm["norm_pre.weight"], state["ln_pre.weight"])
    assert torch.equal(timm["norm.bias"], state["ln_post.bias"])
    assert torch.equal(timm["blocks.1.norm2.weight"], state["transformer.resblocks.1.ln_2.weight"])
    assert torch.equal(timm["blocks.0.attn.qkv.weight"], state["transformer.resblocks.0.attn.in_proj_weight"])
    assert torch.equal(timm["blocks.0.attn.proj.bias"], state["transformer.resblocks.0.attn.out_proj.bias"])
    assert torch.equal(timm["blocks.1.mlp.fc2.weight"], state["transformer.resblocks.1.mlp.c_proj.weight"])
    assert torch.equal(timm["attn_pool.latent"], state["attn_pool.probe"])
    in_proj = state["attn_pool.attn.in_proj_weight"]
    assert torch.equal(timm["attn_pool.q.weight"], in_proj[:width])
    assert torch.equal(timm["attn_pool.kv.weight"], in_proj[width:])
    assert torch.equal(timm["attn_pool.proj.weight"], state["attn_pool.attn.out_proj.weight"])
    assert torch.equal(timm["attn_pool.norm.weight"], state["attn_pool.layernorm.weight"])
    assert torch.equal(timm["attn_pool.mlp.fc1.bias"], state["attn_pool.mlp.c_fc.bias"])
    assert torch.equal(timm["head.weight"], state["proj"].t())
    assert torch.count_nonzero(timm["head.bias"]) == 0
    assert len(timm) == len(state) + 3  # q/kv split of weight and bias, head.bias added
    back = checkpoints.timm_to_official(timm)
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)


def test_load_uses_weights_only(tiny, tmp_path, monkeypatch):
    path = tmp_path / "bare.pt"
    torch.save(tiny.state_dict(), path)
    seen = {}
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    pe_core.load_checkpoint(path, config=TINY)
    assert seen.get("map_location") == "cpu"
    assert seen.get("weights_only") is True


def test_python_objects_in_pickle_are_refused(tmp_path):
    path = tmp_path / "object.pt"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError, match=r"object\.pt.*weights_only"):
        checkpoints.read_checkpoint_file(path)


# ----------------------------------------------------------------------------------------
# Bad files


def test_truncated_torch_checkpoint(tiny, tmp_path):
    path = tmp_path / "truncated.pt"
    torch.save(tiny.state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pt.*truncated or corrupt.*download it again"):
        pe_core.load_checkpoint(path, config=TINY)


def test_truncated_safetensors(tiny, tmp_path):
    path = tmp_path / "truncated.safetensors"
    safetensors.save_file(dict(tiny.state_dict()), path)
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    with pytest.raises(CheckpointError, match=r"truncated\.safetensors.*truncated"):
        pe_core.load_checkpoint(path, config=TINY)


def test_json_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"architecture": "vit_pe_core_large_patch14_336"}))
    with pytest.raises(CheckpointError, match=r"config\.json is a JSON file.*not a checkpoint"):
        pe_core.load_checkpoint(path, config=TINY)


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"hello, this is plain text and not a model", "not a checkpoint this loader knows"),
])
def test_other_non_checkpoints(tmp_path, content, message):
    path = tmp_path / "file.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        pe_core.load_checkpoint(path, config=TINY)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        pe_core.load_checkpoint(tmp_path / "nope.pt", config=TINY)
    with pytest.raises(CheckpointError, match="is a directory"):
        pe_core.load_checkpoint(tmp_path, config=TINY)


def test_wrong_shapes_are_listed_with_a_config_hint(tiny, tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(tiny.state_dict(), path)
    other = pe_core.PECoreConfig("wider", image_size=56, patch_size=14, width=96, layers=2, heads=4,
                                 mlp_width=256, output_dim=32)
    with pytest.raises(CheckpointError) as info:
        pe_core.load_checkpoint(path, config=other)
    message = str(info.value)
    assert "tiny.pt does not fit wider" in message
    assert "shape mismatch" in message
    assert "conv1.weight: checkpoint [64, 3, 14, 14] vs model [96, 3, 14, 14]" in message
    assert "try config='test-tiny'" in message


def test_missing_and_unexpected_keys_are_listed(tiny, tmp_path):
    state = dict(tiny.state_dict())
    del state["attn_pool.probe"]
    del state["transformer.resblocks.1.ln_2.bias"]
    state["transformer.resblocks.0.attn.k_bias"] = torch.zeros(64)
    path = tmp_path / "broken.pt"
    torch.save({"visual." + k: v for k, v in state.items()}, path)
    with pytest.raises(CheckpointError) as info:
        pe_core.load_checkpoint(path, config=TINY)
    message = str(info.value)
    assert "2 missing key(s): attn_pool.probe, transformer.resblocks.1.ln_2.bias" in message
    assert "1 unexpected image key(s): transformer.resblocks.0.attn.k_bias" in message


def test_missing_blocks_of_a_deeper_model(tiny, tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(tiny.state_dict(), path)
    deeper = pe_core.PECoreConfig("deeper", image_size=56, patch_size=14, width=64, layers=3, heads=4,
                                  mlp_width=256, output_dim=32)
    with pytest.raises(CheckpointError, match=r"12 missing key\(s\): transformer\.resblocks\.2\."):
        pe_core.load_checkpoint(path, config=deeper)


def test_timm_specific_problems(tiny, tmp_path):
    timm = checkpoints.official_to_timm(tiny.state_dict())
    biased = dict(timm, **{"head.bias": torch.ones_like(timm["head.bias"])})
    path = tmp_path / "biased.safetensors"
    safetensors.save_file(biased, path)
    with pytest.raises(CheckpointError, match="head.bias is not zero"):
        pe_core.load_checkpoint(path, config=TINY)
    partial = {k: v for k, v in timm.items() if k != "attn_pool.kv.weight"}
    path = tmp_path / "partial.safetensors"
    safetensors.save_file(partial, path)
    with pytest.raises(CheckpointError, match="has attn_pool.q.weight but not attn_pool.kv.weight"):
        pe_core.load_checkpoint(path, config=TINY)


def test_state_dict_without_tensors(tmp_path):
    path = tmp_path / "empty_dict.pt"
    torch.save({"epoch": 3, "name": "x"}, path)
    with pytest.raises(CheckpointError, match="holds no tensors"):
        pe_core.load_checkpoint(path, config=TINY)


# ----------------------------------------------------------------------------------------
# safetensors reader/writer


def test_safetensors_round_trip_all_dtypes(tmp_path):
    tensors = {
        "f32": torch.randn(3, 4),
        "f16": torch.randn(5).half(),
        "bf16": torch.randn(2, 2).to(torch.bfloat16),
        "f64": torch.randn(2, dtype=torch.float64),
        "i64": torch.arange(6).reshape(2, 3),
        "i8": torch.tensor([-3, 4], dtype=torch.int8),
        "u8": torch.tensor([250], dtype=torch.uint8),
        "flag": torch.tensor([True, False]),
        "empty": torch.zeros(0, 4),
        "scalar": torch.tensor(2.5),
        "noncontig": torch.randn(4, 3).t(),
    }
    path = tmp_path / "all.safetensors"
    safetensors.save_file(tensors, path, metadata={"format": "pt", "note": "test"})
    header, metadata, start = safetensors.read_header(path)
    assert metadata == {"format": "pt", "note": "test"}
    assert start % 8 == 0
    assert header["bf16"]["dtype"] == "BF16" and header["i64"]["shape"] == [2, 3]
    loaded = safetensors.load_file(path)
    assert set(loaded) == set(tensors)
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor), name


def test_safetensors_layout_matches_the_format(tmp_path):
    """Byte layout by hand: u64 LE header length, JSON header, raw LE data."""
    path = tmp_path / "hand.safetensors"
    data = struct.pack("<2f", 1.5, -2.0)
    header = json.dumps({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    assert safetensors.load_file(path)["x"].tolist() == [1.5, -2.0]
    written = tmp_path / "written.safetensors"
    safetensors.save_file({"x": torch.tensor([1.5, -2.0])}, written)
    raw = written.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    assert json.loads(raw[8:8 + length])["x"] == {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    assert raw[8 + length:] == data


@pytest.mark.parametrize("header, message", [
    ({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, "do not match shape"),
    ({"x": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}}, "has dtype 'Q4'"),
    ({"x": {"dtype": "F32", "shape": [2]}}, "lacks dtype/shape/data_offsets"),
    ({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, "truncated"),
])
def test_safetensors_bad_headers(tmp_path, header, message):
    path = tmp_path / "bad.safetensors"
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"\0" * 8)
    with pytest.raises(safetensors.SafetensorsError, match=message):
        safetensors.load_file(path)
