"""Our PE-Core tower against the peers' own implementations, with their own weights files.

Each peer builds its PE-Core model with random weights from its own code, writes
its state_dict the way it publishes weights (torch pickle and safetensors, as
written by the safetensors library), and the file goes through our
``pe_core.load_checkpoint``; our forward must then match the peer's own forward
to 1e-5 relative (max |ours - theirs| / max |theirs|):

* timm's ``vit_pe_core_*`` vision models (every one timm has);
* open_clip's ``PE-Core-*`` CLIP configs (vision tower = timm trunk under
  ``visual.trunk.``; the text tower is in the file and ignored);
* the official facebookresearch/perception_models code, run as it is
  (``core.vision_encoder.pe.VisionTransformer``). It is not on PyPI: the test
  runs when ``core.vision_encoder`` imports, e.g. with ``PE_PERCEPTION_MODELS``
  pointing at a checkout of that repository (it needs einops and timm).

Where a peer is not installed (the Debian stack has none of them) the tests
skip, saying so; the PyPI stack installs timm and open_clip
(scripts/requirements-pypi.txt). Full-size L14 is marked slow; the gigantic
G14-448 (1.9 B parameters) and, in the fast runs, L14 are built with 2 of their
layers through the peer's own depth argument: every other dimension, the pooling
and the no-CLS-token layout of G stay the peer's.
"""

import contextlib
import dataclasses
import importlib
import os
import sys

import pytest
import torch

from perception_retrieval import checkpoints, pe_core

timm = pytest.importorskip("timm", reason="timm is not installed (the Debian stack has none; PE_STACK=pypi "
                                          "installs it)")
safetensors_torch = pytest.importorskip("safetensors.torch", reason="the safetensors package is not installed")

# timm model -> (our config, open_clip config)
PEERS = {
    "vit_pe_core_tiny_patch16_384": ("PE-Core-T16-384", "PE-Core-T-16-384"),
    "vit_pe_core_small_patch16_384": ("PE-Core-S16-384", "PE-Core-S-16-384"),
    "vit_pe_core_base_patch16_224": ("PE-Core-B16-224", "PE-Core-B-16"),
    "vit_pe_core_large_patch14_336": ("PE-Core-L14-336", "PE-Core-L-14-336"),
    "vit_pe_core_gigantic_patch14_448": ("PE-Core-G14-448", "PE-Core-bigG-14-448"),
}
REDUCED_DEPTH = 2
# (timm model, layers or None for the full depth); L14 full size is slow, G never full.
CASES = [
    pytest.param("vit_pe_core_tiny_patch16_384", None, id="T16-384"),
    pytest.param("vit_pe_core_small_patch16_384", None, id="S16-384"),
    pytest.param("vit_pe_core_base_patch16_224", None, id="B16-224"),
    pytest.param("vit_pe_core_large_patch14_336", REDUCED_DEPTH, id="L14-336-2-layers"),
    pytest.param("vit_pe_core_large_patch14_336", None, id="L14-336", marks=pytest.mark.slow),
    pytest.param("vit_pe_core_gigantic_patch14_448", REDUCED_DEPTH, id="G14-448-2-layers"),
]
RELATIVE = 1e-5


@pytest.fixture(autouse=True)
def all_cores():
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def our_config(name: str, layers):
    config = pe_core.get_config(name)
    return config if layers is None else dataclasses.replace(config, layers=layers, name=f"{name}-{layers}-layers")


def images_for(config, count=2):
    generator = torch.Generator().manual_seed(7)
    return torch.rand(count, 3, config.image_size, config.image_size, generator=generator) * 2 - 1


def relative_difference(ours, theirs):
    return ((ours - theirs).abs().max() / theirs.abs().max()).item()


def saved_in_each_format(state, directory, stem):
    """The peer's state_dict as torch.save and then as safetensors.torch.save_file write it,
    one file at a time, each removed once the caller has checked it: a full CLIP L14 is
    2.6 GB a copy, and pytest keeps a failed test's files."""
    state = {k: v.contiguous() for k, v in state.items()}
    writers = ((f"{stem}.bin", lambda path: torch.save(state, path)),
               (f"{stem}.safetensors", lambda path: safetensors_torch.save_file(state, path, metadata={"format": "pt"})))
    for name, write in writers:
        path = os.path.join(directory, name)
        write(path)
        yield path
        os.remove(path)


def check_against(theirs_forward, state, config, tmp_path, stem, expected_layout):
    images = images_for(config)
    with torch.no_grad():
        theirs = theirs_forward(images)
    assert theirs.shape == (2, config.output_dim)
    checked = 0
    for path in saved_in_each_format(state, str(tmp_path), stem):
        _, layout = checkpoints.read_vision_state_dict(path)
        assert layout == expected_layout, path
        ours_model = pe_core.load_checkpoint(path, config=config)
        with torch.no_grad():
            ours = ours_model(images)  # the inference path pe::Encoder's file runs
        assert relative_difference(ours, theirs) <= RELATIVE, (path, relative_difference(ours, theirs))
        grad_path = ours_model(images).detach()  # the autograd-friendly path
        assert relative_difference(grad_path, theirs) <= RELATIVE, path
        checked += 1
    assert checked == 2


def zero_head_bias(model):
    """PE-Core's projection has no bias: the real timm/open_clip weights carry head.bias = 0
    (our loader refuses anything else), but a random init draws one."""
    head = getattr(model, "head", None)
    if isinstance(head, torch.nn.Linear) and head.bias is not None:
        with torch.no_grad():
            head.bias.zero_()


def test_every_timm_pe_core_model_is_covered():
    assert sorted(timm.list_models("vit_pe_core_*")) == sorted(PEERS)


@pytest.mark.parametrize("timm_name, layers", CASES)
def test_timm(timm_name, layers, tmp_path):
    config = our_config(PEERS[timm_name][0], layers)
    kwargs = {} if layers is None else {"depth": layers}
    torch.manual_seed(0)
    model = timm.create_model(timm_name, pretrained=False, **kwargs).eval()
    zero_head_bias(model)
    check_against(model, model.state_dict(), config, tmp_path, "model", "timm")


@contextlib.contextmanager
def timm_depth(layers):
    """open_clip builds its trunk with timm.create_model; pass the depth through it."""
    if layers is None:
        yield
        return
    original = timm.create_model

    def create_model(*args, **kwargs):
        return original(*args, depth=layers, **kwargs)

    timm.create_model = create_model
    try:
        yield
    finally:
        timm.create_model = original


@pytest.mark.parametrize("timm_name, layers", CASES)
def test_open_clip(timm_name, layers, tmp_path):
    open_clip = pytest.importorskip("open_clip", reason="open_clip is not installed (the Debian stack has none; "
                                                        "PE_STACK=pypi installs it)")
    ours_name, clip_name = PEERS[timm_name]
    config = our_config(ours_name, layers)
    torch.manual_seed(0)
    text = {}
    if timm_name.endswith("gigantic_patch14_448"):
        # bigG's text tower alone is ~700 M parameters that this test never looks at.
        text = {"text_cfg": {"context_length": 8, "vocab_size": 64, "width": 64, "heads": 2, "layers": 1}}
    with timm_depth(layers):
        model = open_clip.create_model(clip_name, pretrained=None, **text).eval()
    zero_head_bias(model.visual.trunk)
    check_against(lambda images: model.encode_image(images, normalize=False), model.state_dict(), config,
                  tmp_path, "open_clip_model", "open_clip-timm")


def _official():
    root = os.environ.get("PE_PERCEPTION_MODELS")
    if root and root not in sys.path:
        sys.path.insert(0, root)
    try:
        return importlib.import_module("core.vision_encoder.pe")
    except ImportError as error:
        pytest.skip(f"the official perception_models code is not importable ({error}); it is not on PyPI: set "
                    "PE_PERCEPTION_MODELS to a checkout of facebookresearch/perception_models")


@pytest.mark.parametrize("name, layers", [
    ("PE-Core-T16-384", None), ("PE-Core-B16-224", None), ("PE-Core-L14-336", REDUCED_DEPTH),
    ("PE-Core-G14-448", REDUCED_DEPTH),
    pytest.param("PE-Core-L14-336", None, marks=pytest.mark.slow),
])
def test_official_perception_models(name, layers, tmp_path):
    official = _official()
    config = our_config(name, layers)
    kwargs = {} if layers is None else {"layers": layers}
    torch.manual_seed(0)
    model = official.VisionTransformer.from_config(name, pretrained=False, **kwargs).eval()
    check_against(model, model.state_dict(), config, tmp_path, "vision", "bare")
