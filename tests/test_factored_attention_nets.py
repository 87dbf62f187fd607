"""The factored closure of attention-network graphs (ViT, Mixer, Swin windows) equals the explicit one.

Each small network below uses the data movement of its family: patches flattened and transposed into
tokens, a class token concatenated, heads split by a reshape and a permute (``qkv.permute(2, 0, 3, 1, 4)``)
and taken apart by ``unbind``, token mixing through transposes, windows cut by ``view``/``permute``. The
closure is compared with the explicit zeta matrix entry by entry, and the transform both ways
(``test_factored.compare``); the exact transform of the ViT block is compared bit for bit with the
Python-integer reference of ``test_exact``.
"""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nsp.transforms.standard import StandardTransform

from test_exact import check, signals_of
from test_factored import compare, core_of


class TinyViT(nn.Module):
    """Patch embedding, class token, position embedding, one pre-norm block with fused attention and an
    MLP, the class token's features to logits."""

    def __init__(self, d=4, heads=2, patch=2, size=4, classes=3):
        super().__init__()
        tokens = (size // patch) ** 2
        self.heads = heads
        self.embed = nn.Conv2d(1, d, patch, stride=patch)
        self.cls = nn.Parameter(torch.randn(1, 1, d))
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, d))
        self.norm1, self.norm2, self.norm = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)                        # (B, tokens, d)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], dim=1) + self.pos
        B, N, C = t.shape
        qkv = self.qkv(self.norm1(t)).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, C)
        t = t + self.proj(a)
        t = t + self.fc2(F.gelu(self.fc1(self.norm2(t))))
        return self.head(self.norm(t)[:, 0])


class TinyMixer(nn.Module):
    """Patches to tokens, token mixing through transposes, channel mixing, mean over tokens."""

    def __init__(self, d=3, patch=2, size=4, classes=2):
        super().__init__()
        tokens = (size // patch) ** 2
        self.embed = nn.Conv2d(1, d, patch, stride=patch)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.tok1, self.tok2 = nn.Linear(tokens, 3), nn.Linear(3, tokens)
        self.ch = nn.Linear(d, d)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = t + self.tok2(F.gelu(self.tok1(self.norm1(t).transpose(1, 2)))).transpose(1, 2)
        t = t + self.ch(self.norm2(t))
        return self.head(t.mean(1))


class Windows(nn.Module):
    """Swin's window partition and its reverse around a per-window token mixing and a channel map."""

    def __init__(self, d=2, size=4, window=2):
        super().__init__()
        self.d, self.size, self.window = d, size, window
        self.embed = nn.Conv2d(1, d, 1)
        self.mix = nn.Linear(window * window, window * window)
        self.ch = nn.Linear(d, d)

    def forward(self, x):
        B, H, W, w = x.shape[0], self.size, self.size, self.window
        t = self.embed(x).permute(0, 2, 3, 1)                               # (B, H, W, d)
        win = t.view(B, H // w, w, W // w, w, self.d).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, self.d)
        win = self.ch(self.mix(win.transpose(1, 2)).transpose(1, 2))        # within each window
        back = win.view(B, H // w, W // w, w, w, self.d).permute(0, 1, 3, 2, 4, 5).reshape(B, H, W, self.d)
        return (t + back).flatten(1)


@pytest.mark.parametrize("make, shape", [(TinyViT, (1, 1, 4, 4)), (TinyMixer, (1, 1, 4, 4)),
                                         (Windows, (1, 1, 4, 4))], ids=["vit", "mixer", "swin-windows"])
def test_transformer_blocks_take_the_factored_path(make, shape):
    torch.manual_seed(0)
    core = core_of(make(), torch.randn(*shape), trace="ops")
    closure = compare(core)
    assert closure is not None
    assert any(o != tuple(range(len(o))) for o in closure.orders)      # permuted axes on the way


def test_vit_block_exact_transform_is_bit_identical_to_the_integer_reference():
    torch.manual_seed(0)
    net = TinyViT()
    core = core_of(net, torch.randn(1, 1, 4, 4), trace="ops")
    assert StandardTransform().fit(core).factored
    check(core, signals_of(net, torch.randn(2, 1, 4, 4)), "vit")


def _timm():
    from nsp import external
    try:
        external.import_torchvision()
        import timm  # noqa: F401
    except Exception:                         # the models extra is optional
        pytest.skip("timm is not installed (the models extra)")
    return external


TIMM = [("timm:vit_tiny_patch16_224", {"img_size": 8, "patch_size": 4, "depth": 1, "embed_dim": 8, "num_heads": 2}),
        ("timm:deit_tiny_patch16_224", {"img_size": 8, "patch_size": 4, "depth": 1, "embed_dim": 8, "num_heads": 2}),
        ("timm.models.mlp_mixer:MlpMixer", {"img_size": 8, "patch_size": 4, "num_blocks": 1, "embed_dim": 8}),
        ("timm.models.mlp_mixer:MlpMixer", {"img_size": 8, "patch_size": 4, "num_blocks": 1, "embed_dim": 8,
                                            "block_layer": "resmlp"})]


@pytest.mark.parametrize("architecture, options", TIMM, ids=["vit", "deit", "mixer", "resmlp"])
def test_timm_transformers_take_the_factored_path(architecture, options):
    external = _timm()
    torch.manual_seed(0)
    if ":" in architecture and "." in architecture.split(":")[0]:
        from timm.models import mlp_mixer
        options = dict(options, num_classes=3)
        if options.pop("block_layer", None) == "resmlp":
            options.update(block_layer=mlp_mixer.ResBlock, norm_layer=mlp_mixer.Affine, stem_norm=False,
                           mlp_ratio=4)
        net = mlp_mixer.MlpMixer(**options)
    else:
        net = external.build(architecture, dict(options, num_classes=3))
    core = core_of(net, torch.randn(1, 3, 8, 8), trace="ops")
    assert compare(core, samples=2) is not None


def test_permutes_survive_the_graph_file(tmp_path):
    """The pipeline fits transforms on the graph read back from its file: a permute stays a permutation
    there (the factored path), and a file whose permutation does not match its coordinates is refused."""
    import h5py

    from nsp import storage
    torch.manual_seed(0)
    core = core_of(TinyViT(), torch.randn(1, 1, 4, 4), trace="ops")
    storage.write_graph(tmp_path / "g.h5", core)
    loaded = storage.read_graph(tmp_path / "g.h5")
    assert StandardTransform("factored").fit(loaded).factored
    kinds = [[type(b).__name__ for _, b in items] for items in loaded.blocks]
    assert kinds == [[type(b).__name__ for _, b in items] for items in core.blocks]
    with h5py.File(tmp_path / "g.h5", "r+") as f:
        layer = next(i for i, items in enumerate(core.blocks) if items and type(items[0][1]).__name__ == "Permutation")
        f[f"blocks/{layer}/0"].attrs["permutation"] = np.array([0, 1, 2], dtype=np.int64)
    storage.seal(tmp_path / "g.h5")                     # as if nsp had written it so
    with pytest.raises(ValueError, match=rf"blocks/{layer}/0.*rows and columns are not the permutation \(0, 1, 2\)"):
        storage.read_graph(tmp_path / "g.h5")
