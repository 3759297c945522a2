"""Micro-Net architecture: block shapes from the paper, parameter counts, gradients, precision."""

from __future__ import annotations

import pytest
import torch

from micronet.models import (
    MicroNetOutput,
    count_flops,
    count_parameters,
    create,
    list_models,
    normalize,
)

SMALL = 1 / 16

# (C, H, W) at full width for every block of Micro-Net-508, from the paper notes' layer table.
SHAPES_508 = [
    (128, 252), (256, 124), (512, 60), (1024, 28),  # B1..B4
    (2048, 8),  # B5
    (2048, 16), (1024, 32), (512, 64), (256, 128), (128, 256),  # B6..B10
]
SHAPES_252 = [
    (128, 124), (256, 60), (512, 28), (1024, 12),  # B1..B4
    (2048, 8),  # B5
    (1024, 16), (512, 32), (256, 64), (128, 128),  # B6..B9
]


@pytest.mark.parametrize(("name", "shapes"), [("micronet508", SHAPES_508),
                                             ("micronet252", SHAPES_252)])
def test_block_shapes(name, shapes):
    model = create(name, width=SMALL).eval()
    s = model.input_size
    with torch.no_grad():
        feats = model.forward_features(torch.zeros(1, 3, s, s))
    got = [tuple(f.shape[1:]) for f in feats]
    want = [(max(1, round(c * SMALL)), hw, hw) for c, hw in shapes]
    assert got == want


def test_aux_branch_shapes_508():
    model = create("micronet508", width=SMALL).eval()
    seen = {}
    hooks = [b.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, tuple(o.shape)))
             for k, b in enumerate(model.heads.branches)]
    with torch.no_grad():
        model(torch.zeros(1, 3, 508, 508))
    for h in hooks:
        h.remove()
    # G4 maps: 64, 128, 256 channels at full width, 510×510
    assert seen == {0: (1, 4, 510, 510), 1: (1, 8, 510, 510), 2: (1, 16, 510, 510)}


@pytest.mark.parametrize("name", list_models())
def test_train_and_eval_outputs(name):
    torch.manual_seed(0)
    model = create(name, width=SMALL)
    s = model.input_size
    x = torch.randn(1, 3, s, s)
    out = model.train()(x)
    assert isinstance(out, MicroNetOutput)
    assert out.main.shape == (1, 3, s, s)
    assert [a.shape for a in out.aux] == [(1, 3, s, s)] * 3
    model.eval()
    with torch.no_grad():
        y1, y2 = model(x), model(x)
    assert isinstance(y1, torch.Tensor) and y1.shape == (1, 3, s, s)
    assert torch.equal(y1, y2), "eval mode must be deterministic (dropout off)"


def test_full_width_parameter_count_and_flops():
    with torch.device("meta"):
        model = create("micronet508")
        quarter = create("micronet508", width=0.25)
    assert count_parameters(model) == pytest.approx(457e6, rel=0.01)
    assert count_parameters(quarter) == pytest.approx(29e6, rel=0.03)
    assert count_flops(model) == pytest.approx(1.4e12, rel=0.05)
    g5 = model.heads.main[1]
    assert g5.in_channels == 448 and sum(p.numel() for p in g5.parameters()) == 12_099


def test_minus_has_no_side_inputs_or_skips():
    with torch.device("meta"):
        full = create("micronet508")
        minus = create("micronet508_minus")
    assert all(b.side is None for b in minus.encoder.blocks)
    assert all(b.skip is None for b in minus.decoder.blocks)
    assert count_parameters(minus) < count_parameters(full)


@pytest.mark.parametrize("name", list_models())
def test_gradient_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = create(name, width=SMALL, dropout=0.0).train()
    s = model.input_size
    out = model(torch.randn(1, 3, s, s))
    loss = out.main.square().mean() + sum(a.square().mean() for a in out.aux)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_grad_checkpointing_matches():
    torch.manual_seed(0)
    model = create("micronet252", width=SMALL, dropout=0.0).train()
    x = torch.randn(1, 3, 252, 252)

    def total(out):
        return out.main.sum() + sum(a.sum() for a in out.aux)

    total(model(x)).backward()
    ref = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing(True)
    total(model(x)).backward()
    for a, p in zip(ref, model.parameters(), strict=True):
        torch.testing.assert_close(p.grad, a, rtol=1e-4, atol=1e-6)


def test_channels_last_and_bf16_close_to_fp32(tiny_model):
    x = normalize(torch.randint(0, 256, (1, 3, 508, 508), dtype=torch.uint8))
    with torch.no_grad():
        ref = tiny_model(x)
        cl = tiny_model.to(memory_format=torch.channels_last)(
            x.contiguous(memory_format=torch.channels_last))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf = tiny_model(x.contiguous(memory_format=torch.channels_last))
    tiny_model.to(memory_format=torch.contiguous_format)
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-4)
    assert (bf.float() - ref).abs().max() < 0.1
    assert (bf.float().argmax(1) == ref.argmax(1)).float().mean() > 0.98


@pytest.mark.parametrize("shape", [(1, 3, 500, 508), (1, 3, 512, 512), (1, 1, 508, 508), (3, 508)])
def test_wrong_input_size_is_a_clear_error(tiny_model, shape):
    with pytest.raises(ValueError, match=r"508, 508\) only"):
        tiny_model(torch.zeros(shape))


def test_unknown_model_and_bad_width():
    with pytest.raises(ValueError, match="available: micronet252"):
        create("micronet999")
    with pytest.raises(ValueError, match="width"):
        create("micronet508", width=0)


def test_nearest_upsample_init_upsamples_without_a_stride_grid():
    """With ``upsample_init="nearest"`` every stride-k upsampling layer starts as a 1×1 conv
    followed by nearest upsampling: constant k×k blocks, no stride-grid pattern."""
    torch.manual_seed(0)
    model = create("micronet508", width=SMALL, upsample_init="nearest")
    ups = [m for m in model.modules()
           if isinstance(m, torch.nn.ConvTranspose2d) and m.stride[0] > 1]
    assert sorted({m.stride[0] for m in ups}) == [2, 4, 8]
    for layer in ups:
        k = layer.stride[0]
        out = layer(torch.randn(1, layer.in_channels, 5, 5))
        blocks = out.unflatten(2, (5, k)).unflatten(4, (5, k))  # (1, C, 5, k, 5, k)
        torch.testing.assert_close(blocks, blocks[:, :, :, :1, :, :1].expand_as(blocks))
    torch.manual_seed(0)
    glorot = create("micronet508", width=SMALL)
    up = next(m for m in glorot.modules() if isinstance(m, torch.nn.ConvTranspose2d)
              and m.stride[0] > 1)
    assert not torch.equal(up.weight[:, :, 0, 0], up.weight[:, :, 1, 1])  # the default differs
    with pytest.raises(ValueError, match="upsample_init"):
        create("micronet508", width=SMALL, upsample_init="bilinear")


def test_unknown_pretrained_lists_known():
    from micronet.errors import MicronetError

    with pytest.raises(MicronetError, match="no pretrained weights micronet508.nosuch"):
        create("micronet508", pretrained="nosuch")


def test_models_cli_prints_table(capsys):
    from micronet.cli import main

    assert main(["models", "--width", "0.25"]) == 0
    out = capsys.readouterr().out
    assert "micronet508" in out and "micronet252" in out and "28.58" in out


@pytest.mark.gpu
def test_cuda_bf16_forward():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = create("micronet508", width=0.25).cuda().eval().to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 508, 508, device="cuda").contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = model(x).float()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf = model(x).float()
    assert (bf.argmax(1) == ref.argmax(1)).float().mean() > 0.98


@pytest.mark.parametrize("k", [2, 4, 8])
def test_tiled_deconv_equals_conv_transpose(k):
    """The matmul path of kernel == stride deconvolutions is the same layer: same output and
    gradients as torch's conv_transpose2d, channels-last out; other geometries fall back."""
    from torch.nn import functional as F

    from micronet.models.blocks import TiledDeconv2d

    torch.manual_seed(0)
    layer = TiledDeconv2d(6, 5, k, stride=k)
    x = torch.randn(2, 6, 7, 9, requires_grad=True)
    y = layer(x)
    ref_x = x.detach().clone().requires_grad_()
    ref = F.conv_transpose2d(ref_x, layer.weight, layer.bias, stride=k)
    assert y.shape == ref.shape == (2, 5, 7 * k, 9 * k)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, ref)
    grad = torch.randn_like(ref)
    (g_x, g_w, g_b) = torch.autograd.grad(y, (x, layer.weight, layer.bias), grad)
    (r_x, r_w, r_b) = torch.autograd.grad(ref, (ref_x, layer.weight, layer.bias), grad)
    for got, want in ((g_x, r_x), (g_w, r_w), (g_b, r_b)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    overlapping = TiledDeconv2d(6, 5, 5, stride=1)  # the decoder's re-alignment: ordinary path
    torch.testing.assert_close(overlapping(x.detach()),
                               F.conv_transpose2d(x.detach(), overlapping.weight, overlapping.bias))
