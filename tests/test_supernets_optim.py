"""SliceAdamW (the reference) and FastSliceAdamW: AdamW on the used slices of entangled weights
(archlab.supernets.training.optim)."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F

from archlab.spaces.library import transformer_lm_space
from archlab.supernets import ConvNet, TransformerLM
from archlab.supernets.training.optim import FastSliceAdamW, SliceAdamW, clip_gradients

SPACE = transformer_lm_space("tiny_lm", n_layer=(1, 2), d_model=(16, 24, 32), n_head=(1, 2), ffn=(32, 64))
ARCH = {"n_layer": 2, "d_model": 24, "layers": [{"n_head": 1, "ffn": 64}, {"n_head": 2, "ffn": 32}]}
SMALL = {"n_layer": 1, "d_model": 16, "layers": [{"n_head": 1, "ffn": 32}]}
LARGE = {"n_layer": 2, "d_model": 32, "layers": [{"n_head": 2, "ffn": 64}, {"n_head": 2, "ffn": 64}]}


def lm(seed: int = 0) -> TransformerLM:
    torch.manual_seed(seed)
    return TransformerLM(SPACE, vocab_size=11, context=8)


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 11, (3, 8), generator=g), torch.randint(0, 11, (3, 8), generator=g)


def loss_of(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x).flatten(0, 1), y.flatten())


def train_steps(net, opt, archs, steps: int = 4) -> None:
    """``steps`` optimizer steps; each accumulates one forward/backward per arch in ``archs``."""
    x, y = batch()
    for _ in range(steps):
        opt.zero_grad()
        for arch in archs:
            net.set_arch(arch)
            loss_of(net, x, y).backward()
        opt.step()


def box_reference(net, arch, steps: int, **kwargs):
    """Ordinary autograd on a copy of ``net`` (full-size gradients), and torch AdamW on each
    tensor's active box only: what SliceAdamW should do for a fixed ``arch``."""
    ref = copy.deepcopy(net)
    ref.set_arch(arch)
    ref.train()
    boxes = []
    for mod in ref.modules():
        if hasattr(mod, "bank") and hasattr(mod, "index"):
            boxes.append((mod.bank.weight, tuple(mod.index)))
            if mod.bank.bias is not None:
                boxes.append((mod.bank.bias, (mod.index[0],)))
    leaves = {id(p): (p, idx, p.detach()[idx].clone().requires_grad_()) for p, idx in boxes}
    opt = torch.optim.AdamW([v for _, _, v in leaves.values()], **kwargs)
    x, y = batch()
    for _ in range(steps):
        ref.zero_grad(set_to_none=True)
        loss_of(ref, x, y).backward()
        for p, idx, v in leaves.values():
            v.grad = p.grad[idx].clone() if p.grad is not None else None
        opt.step()
        with torch.no_grad():
            for p, idx, v in leaves.values():
                p[idx] = v
    return ref, opt, leaves


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("cls", [SliceAdamW, FastSliceAdamW])
def test_is_torch_adamw_on_the_active_slice_and_leaves_the_rest_untouched(fused, cls):
    net = lm()
    net.set_arch(ARCH)
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    kwargs = {"lr": 1e-2, "weight_decay": 0.1, "fused": fused}
    ref, ref_opt, leaves = box_reference(net, ARCH, 4, **kwargs)
    opt = cls(net.parameters(), net, **kwargs)
    train_steps(net, opt, [ARCH], steps=4)
    # weights: equal to torch AdamW on the boxes, everywhere (outside the boxes: unchanged)
    for (name, a), b in zip(net.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    qkv = net.blocks[0].attn.qkv
    w = qkv.bank.weight
    rows, cols = qkv.out_features, qkv.in_features
    old = before["blocks.0.attn.qkv.bank.weight"]
    assert torch.equal(w.detach()[rows:], old[rows:]) and torch.equal(w.detach()[:, cols:], old[:, cols:])
    assert not torch.equal(w.detach()[:rows, :cols], old[:rows, :cols])
    # moments: torch AdamW's on the box, zero outside; same step count
    ref_w = ref.blocks[0].attn.qkv.bank.weight
    ref_state = ref_opt.state[leaves[id(ref_w)][2]]
    state = opt.state[w]
    for key in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(state[key][:rows, :cols], ref_state[key], rtol=0, atol=0)
        assert state[key][rows:].abs().sum() == 0 and state[key][:, cols:].abs().sum() == 0
    assert float(state["step"]) == float(ref_state["step"]) == 4


def test_one_step_matches_torch_adamw_on_the_extracted_subnet():
    net = lm()
    net.set_arch(ARCH)
    sub = net.extract(ARCH).train()
    net.train()
    opt = FastSliceAdamW(net.parameters(), net, lr=1e-3, fused=True)
    ref = torch.optim.AdamW(sub.parameters(), lr=1e-3, fused=True)
    x, y = batch()
    for model, o in ((net, opt), (sub, ref)):
        loss_of(model, x, y).backward()
        o.step()
    # up to rounding (AdamW divides by sqrt(v): gradients that are zero up to rounding, like
    # an attention key bias's, can move by up to lr either way)
    for (name, a), b in zip(net.extract(ARCH).state_dict().items(), sub.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1.1e-3 if "qkv.bias" in name else 1e-6, msg=name)
    with torch.no_grad():
        net.eval()
        sub.eval()
        torch.testing.assert_close(net(x), sub(x), rtol=0, atol=1e-5)


def test_a_layer_the_arch_lacks_gets_no_state_and_stays():
    net = lm()
    fresh = lm()
    net.set_arch(SMALL)
    opt = FastSliceAdamW(net.parameters(), net, lr=1e-2)
    train_steps(net, opt, [SMALL], steps=2)
    unused = list(net.blocks[1].parameters())
    assert unused and all(p not in opt.state for p in unused)
    assert all(torch.equal(p, q) for p, q in zip(unused, fresh.blocks[1].parameters()))


@pytest.mark.parametrize("fused", [False, True])
def test_fast_layer_equals_the_reference_bit_for_bit(fused):
    """Sandwich-like steps (several archs, one update), a box that changes, tensors used whole:
    the fast layer (leaf views, dense fused workspaces) updates exactly what the reference
    does, weights and optimizer state alike, and their state dicts load into each other."""
    nets = [lm(), lm()]
    kwargs = {"lr": 1e-2, "weight_decay": 0.1, "fused": fused}
    opts = [cls(n.parameters(), n, **kwargs) for n, cls in zip(nets, (SliceAdamW, FastSliceAdamW))]
    before = {k: v.clone() for k, v in nets[0].state_dict().items()}
    for net, opt in zip(nets, opts):
        net.train()
        train_steps(net, opt, [ARCH, SMALL], steps=3)  # partial slices only: union of ARCH and SMALL
        train_steps(net, opt, [SMALL, LARGE], steps=2)  # LARGE uses some tensors whole
        train_steps(net, opt, [ARCH], steps=2)
    for (name, a), b in zip(nets[0].state_dict().items(), nets[1].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    ref_state, fast_state = (o.state_dict()["state"] for o in opts)
    assert ref_state.keys() == fast_state.keys()
    for k, st in ref_state.items():
        for key, v in st.items():
            torch.testing.assert_close(fast_state[k][key], v, rtol=0, atol=0, msg=f"{k}.{key}")
    # swap the optimizers' states (a checkpoint moves between the two) and go on: still equal
    saved = [o.state_dict() for o in opts]
    opts = [SliceAdamW(nets[0].parameters(), nets[0], **kwargs), FastSliceAdamW(nets[1].parameters(), nets[1], **kwargs)]
    opts[0].load_state_dict(saved[1])
    opts[1].load_state_dict(saved[0])
    for net, opt in zip(nets, opts):
        train_steps(net, opt, [SMALL, ARCH], steps=2)
    for (name, a), b in zip(nets[0].state_dict().items(), nets[1].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    # ARCH and SMALL use rows :64 / :32 and columns :24 / :16 of block 0's ffn_in: after the
    # first phase only the bounding box [:64, :24] has moved
    net = lm()
    opt = FastSliceAdamW(net.parameters(), net, lr=1e-2)
    train_steps(net, opt, [ARCH, SMALL], steps=2)
    w, old = net.blocks[0].ffn_in.bank.weight.detach(), before["blocks.0.ffn_in.bank.weight"]
    assert torch.equal(w[:, 24:], old[:, 24:]) and not torch.equal(w[:64, :24], old[:64, :24])
    assert opt.state[net.blocks[0].ffn_in.bank.weight]["exp_avg"][:, 24:].abs().sum() == 0


def test_sandwich_step_equals_autograd_full_gradients_restricted_to_the_bounding_box():
    net = lm()
    ref_net = copy.deepcopy(net)
    net.train()
    ref_net.train()
    opt = FastSliceAdamW(net.parameters(), net, lr=1e-2)
    train_steps(net, opt, [ARCH, SMALL], steps=1)
    # reference: ordinary autograd (full-size gradients), torch AdamW on the bounding box of the
    # two archs' slices of each tensor (here: ARCH's box contains SMALL's)
    x, y = batch()
    for arch in (ARCH, SMALL):
        ref_net.set_arch(arch)
        loss_of(ref_net, x, y).backward()
    ref_net.set_arch(ARCH)
    for mod, ref_mod in zip(net.modules(), ref_net.modules()):
        if not hasattr(mod, "index") or not hasattr(mod, "bank"):
            continue
        for name in ("weight", "bias"):
            p, q = getattr(mod.bank, name, None), getattr(ref_mod.bank, name, None)
            if p is None or q.grad is None:
                continue
            idx = tuple(mod.index) if name == "weight" else (mod.index[0],)
            box = q.detach()[idx].clone()
            o = torch.optim.AdamW([box.requires_grad_()], lr=1e-2)
            box.grad = q.grad[idx].clone()
            o.step()
            torch.testing.assert_close(p.detach()[idx], box.detach(), rtol=1e-5, atol=1e-6)


def backward_pair():
    """A supernet with a SliceAdamW and a copy without, after the same backward pass on ARCH."""
    net = lm()
    ref_net = copy.deepcopy(net)
    net.set_arch(ARCH)
    ref_net.set_arch(ARCH)
    opt = FastSliceAdamW(net.parameters(), net, lr=1e-2)
    x, y = batch()
    loss_of(net, x, y).backward()
    loss_of(ref_net, x, y).backward()
    return net, ref_net, opt


def test_grads_and_clipping_match_the_full_size_gradients():
    net, ref_net, opt = backward_pair()
    # leaf views: the partly used tensors have no .grad, the optimizer holds their slices' gradients
    assert net.blocks[0].attn.qkv.bank.weight.grad is None
    full = [p.grad for p in ref_net.parameters() if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in full]))
    got = torch.linalg.vector_norm(torch.stack([g.norm() for g in opt.grads()]))
    torch.testing.assert_close(got, norm)
    total = clip_gradients(net.parameters(), 0.5, opt)
    assert total == pytest.approx(float(norm), rel=1e-6)
    clipped = torch.linalg.vector_norm(torch.stack([g.norm() for g in opt.grads()]))
    assert float(clipped) == pytest.approx(0.5, rel=1e-4)
    # materialize_grads writes ordinary full-size .grad (zeros outside the slice)
    opt.materialize_grads()
    w, ref_w = net.blocks[0].attn.qkv.bank.weight, ref_net.blocks[0].attn.qkv.bank.weight
    torch.testing.assert_close(w.grad, ref_w.grad * (0.5 / float(norm)), rtol=1e-4, atol=1e-7)


def test_state_dict_round_trip_resumes_exactly_and_is_torch_adamw_format():
    archs = [ARCH, SMALL, LARGE]
    full = lm()
    full_opt = FastSliceAdamW(full.parameters(), full, lr=1e-2)
    for arch in archs * 2:
        train_steps(full, full_opt, [arch], steps=1)

    cut = lm()
    cut_opt = FastSliceAdamW(cut.parameters(), cut, lr=1e-2)
    for arch in archs:
        train_steps(cut, cut_opt, [arch], steps=1)
    buf = io.BytesIO()
    torch.save({"model": cut.state_dict(), "opt": cut_opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    resumed = lm(seed=5)
    resumed.load_state_dict(saved["model"])
    resumed_opt = FastSliceAdamW(resumed.parameters(), resumed, lr=1e-2)
    resumed_opt.load_state_dict(saved["opt"])
    for arch in archs:
        train_steps(resumed, resumed_opt, [arch], steps=1)
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    # same keys as torch AdamW: a torch AdamW loads it
    plain = torch.optim.AdamW(resumed.parameters(), lr=1e-2)
    plain.load_state_dict(saved["opt"])
    assert set(next(iter(plain.state.values()))) == {"step", "exp_avg", "exp_avg_sq"}


def test_release_and_copies_give_ordinary_gradients():
    net = lm()
    net.set_arch(ARCH)
    opt = FastSliceAdamW(net.parameters(), net, lr=1e-2)
    twin = copy.deepcopy(net)  # a copy is not trained by opt: ordinary slices
    x, y = batch()
    loss_of(twin, x, y).backward()
    assert twin.blocks[0].attn.qkv.bank.weight.grad is not None
    loss_of(net, x, y).backward()
    assert net.blocks[0].attn.qkv.bank.weight.grad is None
    opt.release()  # held slice gradients become ordinary .grad; later forwards too
    g = net.blocks[0].attn.qkv.bank.weight.grad
    assert g is not None and g.shape == net.blocks[0].attn.qkv.bank.weight.shape
    net.zero_grad()
    loss_of(net, x, y).backward()
    assert net.blocks[0].attn.qkv.bank.weight.grad is not None


def test_frozen_and_foreign_parameters_keep_ordinary_behaviour():
    net = lm()
    net.set_arch(ARCH)
    net.tok.bank.weight.requires_grad_(False)
    only_blocks = list(net.blocks.parameters())
    opt = FastSliceAdamW(only_blocks, net, lr=1e-2)
    x, y = batch()
    loss_of(net, x, y).backward()
    assert net.tok.bank.weight.grad is None  # frozen
    assert net.ln_f.bank.weight.grad is not None  # not in this optimizer: ordinary .grad
    frozen = net.tok.bank.weight.detach().clone()
    ln_f = net.ln_f.bank.weight.detach().clone()
    opt.step()
    assert torch.equal(net.tok.bank.weight, frozen) and torch.equal(net.ln_f.bank.weight.detach(), ln_f)


def test_convnet_kernel_crops_update_only_the_used_crop():
    torch.manual_seed(0)
    net = ConvNet(num_classes=10, in_channels=1, image_size=28)
    arch = net.space.sample_many(1, seed=3)[0]
    net.set_arch(arch)
    sub = net.extract(arch).train()
    net.train()
    opt = FastSliceAdamW(net.parameters(), net, lr=1e-2, fused=True)
    ref = torch.optim.AdamW(sub.parameters(), lr=1e-2, fused=True)
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    y = torch.arange(4)
    for _ in range(2):
        for model, o in ((net, opt), (sub, ref)):
            o.zero_grad()
            F.cross_entropy(model(x), y).backward()
            o.step()
    net.eval()
    sub.eval()
    with torch.no_grad():
        torch.testing.assert_close(net.extract(arch).eval()(x), sub(x), rtol=1e-5, atol=1e-5)


def test_clip_gradients_sees_the_slice_gradients_through_the_optimizer_it_is_given():
    """No global registry of optimizers: the slice gradients count when the optimizer is
    passed; without it only ``.grad`` does (after ``release`` they are ordinary ``.grad``)."""
    net, ref_net, opt = backward_pair()
    expected = clip_gradients(ref_net.parameters(), None)
    assert clip_gradients(net.parameters(), None, opt) == pytest.approx(expected, rel=1e-6)
    assert clip_gradients(net.parameters(), None) < expected * 0.999  # the leaf views' part is missing
    opt.release()
    assert clip_gradients(net.parameters(), None) == pytest.approx(expected, rel=1e-6)
    # the reference keeps ordinary gradients: nothing to pass
    plain = lm()
    plain.set_arch(ARCH)
    SliceAdamW(plain.parameters(), plain, lr=1e-2)
    loss_of(plain, *batch()).backward()
    assert clip_gradients(plain.parameters(), None) == pytest.approx(expected, rel=1e-6)


def test_fused_moments_kept_dense_between_steps_equal_moments_written_back_every_step():
    """With the fused kernel a strided box's moments stay in the dense workspace while the
    box repeats; the result equals writing them back after every step, and reading
    ``opt.state`` at any point shows the current moments."""
    schedule = [[ARCH], [ARCH], [SMALL], [ARCH], [SMALL, ARCH], [SMALL, ARCH], [LARGE], [SMALL], [SMALL]]
    runs = {}
    for mode in ("kept", "synced", "read_once"):
        net = lm()
        net.train()
        opt = FastSliceAdamW(net.parameters(), net, lr=1e-2, weight_decay=0.1, fused=True)
        w = net.blocks[0].ffn_in.bank.weight
        held_steps = 0
        for i, archs in enumerate(schedule):
            train_steps(net, opt, archs, steps=1)
            held_steps += bool(opt._resident)
            if mode == "synced":
                opt.sync_state()
                runs.setdefault("synced_exp_avg", []).append(opt.state[w]["exp_avg"].clone())
            if mode == "read_once" and i == 3:
                runs["read"] = opt.state[w]["exp_avg"].clone()  # writes back
                assert not opt._resident
        if mode == "kept":
            assert held_steps >= len(schedule) - 2  # moments were held between steps
        runs[mode] = (net.state_dict(), opt.state_dict())
    torch.testing.assert_close(runs["read"], runs["synced_exp_avg"][3], rtol=0, atol=0)
    for mode in ("kept", "read_once"):
        for name, v in runs[mode][0].items():
            torch.testing.assert_close(v, runs["synced"][0][name], rtol=0, atol=0, msg=f"{mode} {name}")
        for k, st in runs[mode][1]["state"].items():
            for key, v in st.items():
                torch.testing.assert_close(v, runs["synced"][1]["state"][k][key], rtol=0, atol=0,
                                           msg=f"{mode} {k}.{key}")


def test_fused_resident_moments_are_kept_across_steps_of_one_box(monkeypatch):
    import archlab.supernets.training.optim.fast as optim_mod

    net = lm()
    net.train()
    net.set_arch(ARCH)
    opt = FastSliceAdamW(net.parameters(), net, lr=1e-2, fused=True)
    x, y = batch()
    per_step: list[list[int]] = []  # tensors per copy_all call, step by step
    real = optim_mod.copy_all
    monkeypatch.setattr(optim_mod, "copy_all", lambda dst, src: (per_step[-1].append(len(dst)), real(dst, src)))
    for _ in range(3):
        opt.zero_grad()
        loss_of(net, x, y).backward()
        per_step.append([])
        opt.step()
    n_strided = len(opt._resident)
    assert n_strided > 0
    assert per_step[0] == [3 * n_strided, n_strided]  # in: param + 2 moments; back: param
    assert per_step[1] == per_step[2] == [n_strided, n_strided]  # in: param only; back: param
