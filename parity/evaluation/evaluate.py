"""Metrics and evaluation protocols shared by both models.

Every model here has ``tokens = model.encode(images)`` (images (B, 3, H, W) in [0, 1] -> (B, num_lp,
dim)) and ``pred = model.decode(tokens, coords)`` (coords (B, N, 2), (y, x) -> (B, N, 3)). Functions
run under ``torch.no_grad`` with the model in eval mode (its previous mode is restored afterwards)
and return plain floats / dicts, so their results go straight into JSON.

Nothing here clamps a prediction: the notebook's hyponet ends in a sigmoid, the original's does
not, and clamping would hide that difference from the scores.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..core.coords import make_grid
from ..core.memory import PeakMemory, gpu_peak_mib

# Queries decoded at once, over the whole batch: 32 images at 256x256 are 2.1M queries, whose
# attention against the LP tokens would otherwise be materialised in one piece (tens of GB). At
# this size the original's largest attention map per call is 2 heads x 32768 x 256 floats, 64 MiB.
DECODE_CHUNK = 32768
# Probe sizes used by ``evaluate_all``: the original encoder costs ~13 GFLOP per image forward, so
# tens of thousands of images are a GPU job; these keep a CPU evaluation within minutes.
PROBE_TRAIN_IMAGES = 2000
PROBE_TEST_IMAGES = 1000
PROBE_L2 = 1e-3  # "a little" ridge on the probe weights, on standardised features


# ----------------------------------------------------------------------------------------------
# Plumbing


@contextlib.contextmanager
def _inference(model: torch.nn.Module):
    """no_grad + eval mode, restoring the caller's train/eval mode afterwards (a trainer may call an
    evaluation mid-run)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _device(model: torch.nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def _split(batch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(images, labels) from a loader item; a bare tensor is an unlabelled batch."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    images, labels = batch[0], (batch[1] if len(batch) > 1 else None)
    if labels is not None and not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(labels)
    return images, labels


def _batches(loader: Iterable, max_images: int | None) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """The loader's batches, the last one cut so that at most ``max_images`` images are seen."""
    seen = 0
    for batch in loader:
        if max_images is not None and seen >= max_images:
            return
        images, labels = _split(batch)
        if max_images is not None and seen + images.shape[0] > max_images:
            keep = max_images - seen
            images = images[:keep]
            labels = labels[:keep] if labels is not None else None
        seen += images.shape[0]
        yield images, labels


class Rebatched:
    """Re-iterable view of a loader that yields batches of exactly ``batch_size`` images (the last
    may be short). The batch-MSE PSNR depends on the batch size, so ``evaluate_all`` fixes it from the
    ``EvalConfig`` whatever batch size the loader was built with."""

    def __init__(self, loader: Iterable, batch_size: int, max_images: int | None = None):
        self.loader, self.batch_size, self.max_images = loader, batch_size, max_images

    def __iter__(self):
        images_buf, labels_buf, n = [], [], 0
        for images, labels in _batches(self.loader, self.max_images):
            if labels is None:
                labels = torch.full((images.shape[0],), -1, dtype=torch.long)
            images_buf.append(images)
            labels_buf.append(labels)
            n += images.shape[0]
            while n >= self.batch_size:
                all_images, all_labels = torch.cat(images_buf), torch.cat(labels_buf)
                yield all_images[: self.batch_size], all_labels[: self.batch_size]
                images_buf, labels_buf = [all_images[self.batch_size:]], [all_labels[self.batch_size:]]
                n -= self.batch_size
        if n:
            yield torch.cat(images_buf), torch.cat(labels_buf)


def _grid(height: int, width: int, convention: str, batch: int, device) -> torch.Tensor:
    """(B, H*W, 2) query grid, the same for every image (as both sources build it)."""
    return make_grid(height, width, convention, device=device).unsqueeze(0).expand(batch, -1, -1)


def _to_image(pixels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, H*W, 3) row-major -> (B, 3, H, W)."""
    return pixels.transpose(1, 2).reshape(pixels.shape[0], -1, height, width)


def decode_chunked(model, tokens: torch.Tensor, coords: torch.Tensor, hyponet_coords: torch.Tensor | None = None,
                   chunk: int | None = DECODE_CHUNK) -> torch.Tensor:
    """``model.decode`` over about ``chunk`` queries at a time, counted over the whole batch (None: all
    at once). Both decoders treat queries independently, so the result equals one call; memory
    stays bounded for any grid size and batch."""
    batch, n = coords.shape[:2]
    if chunk is None or batch * n <= chunk:
        return model.decode(tokens, coords) if hyponet_coords is None else model.decode(tokens, coords, hyponet_coords)
    chunk = max(1, chunk // batch)  # queries per image per call
    parts = []
    for start in range(0, n, chunk):
        c = coords[:, start:start + chunk]
        if hyponet_coords is None:
            parts.append(model.decode(tokens, c))
        else:
            parts.append(model.decode(tokens, c, hyponet_coords[:, start:start + chunk]))
    return torch.cat(parts, dim=1)


def supports_decoupled(model) -> bool:
    """Whether ``model.decode`` takes separate hyponet coordinates as a third positional argument.
    A model (or wrapper) may state it with a ``supports_decoupled_queries`` attribute; otherwise the
    signature decides (only the notebook model has the argument)."""
    declared = getattr(model, "supports_decoupled_queries", None)
    if declared is not None:
        return bool(declared)
    try:
        params = inspect.signature(model.decode).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in params)


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


# ----------------------------------------------------------------------------------------------
# Metrics


def _mse_per_image(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # float64 so that near-perfect reconstructions do not lose digits (skimage also works in float64)
    return (pred.double() - target.double()).pow(2).flatten(1).mean(dim=1)


def psnr_per_image(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-10 log10 of each image's MSE (data range 1), shape (B,): the original trainer's form, and
    skimage's ``peak_signal_noise_ratio(gt, sr, data_range=1.0)``. A perfect image scores inf."""
    return -10.0 * torch.log10(_mse_per_image(pred, target))


def psnr_batch_mse(pred: torch.Tensor, target: torch.Tensor) -> float:
    """-10 log10 of the MSE over the whole batch: the notebook's ``validate``."""
    mse = (pred.double() - target.double()).pow(2).mean()
    return float(-10.0 * torch.log10(mse))


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM per image, shape (B,), from (B, 3, H, W) tensors, exactly as the notebook calls it:
    ``structural_similarity(gt, sr, data_range=1.0, channel_axis=2)`` on HWC float32 arrays (ground
    truth first). Images need sides of at least 7 (skimage's default window)."""
    from skimage.metrics import structural_similarity  # imported late: only the metrics need it

    gt = target.detach().float().permute(0, 2, 3, 1).cpu().numpy()
    sr = pred.detach().float().permute(0, 2, 3, 1).cpu().numpy()
    scores = [structural_similarity(g, s, data_range=1.0, channel_axis=2) for g, s in zip(gt, sr)]
    return torch.tensor(np.asarray(scores, dtype=np.float64))


# ----------------------------------------------------------------------------------------------
# Protocols


def reconstruct(model, images: torch.Tensor, convention: str, chunk: int | None = DECODE_CHUNK,
                size: int | None = None) -> torch.Tensor:
    """Encode, then decode on the native grid -> (B, 3, H, W), or on a ``size`` x ``size`` grid (the
    super-resolution of the notebook's protocol) -> (B, 3, size, size)."""
    B, _, H, W = images.shape
    if size is not None:
        H = W = int(size)
    with _inference(model):
        images = images.to(_device(model))
        tokens = model.encode(images)
        pixels = decode_chunked(model, tokens, _grid(H, W, convention, B, images.device), chunk=chunk)
        return _to_image(pixels, H, W)


def evaluate_reconstruction(model, loader: Iterable, convention: str, max_images: int | None = None) -> dict:
    """Native-grid reconstruction: 'psnr' is the mean of per-image PSNR over all images (the
    original's form); 'psnr_batch_mse' the mean over batches of the batch-MSE PSNR (the notebook's
    ``validate``, so it depends on the batch size); 'mse' the mean per-image MSE; 'ssim' the mean;
    'per_image': each image's 'psnr', 'ssim' and 'mse' in loader order (paired comparisons and
    either aggregation are computed from these)."""
    psnrs, mses, ssims, batch_psnrs = [], [], [], []
    device = _device(model)
    with _inference(model):
        for images, _ in _batches(loader, max_images):
            images = images.to(device)
            pred = reconstruct(model, images, convention)
            psnrs += psnr_per_image(pred, images).tolist()
            mses += _mse_per_image(pred, images).tolist()
            ssims += ssim(pred, images).tolist()
            batch_psnrs.append(psnr_batch_mse(pred, images))
    return {"psnr": _mean(psnrs), "psnr_batch_mse": _mean(batch_psnrs), "mse": _mean(mses),
            "ssim": _mean(ssims), "images": len(psnrs), "per_image": {"psnr": psnrs, "ssim": ssims, "mse": mses}}


def reference_levels(train_set, test_set, max_train: int = 4096) -> dict:
    """What trivial predictors score on ``test_set`` (mean per-image PSNR, dB): one constant colour
    (the mean colour of the first ``max_train`` training images), each image's own mean colour, and
    for super-resolution, bicubic upsampling of a 2x area-downsampled image. A model near the first two
    has learned colour, not images."""
    train = torch.stack([train_set[i][0] for i in range(min(max_train, len(train_set)))])
    test = torch.stack([test_set[i][0] for i in range(len(test_set))])
    constant = train.mean(dim=(0, 2, 3)).view(1, 3, 1, 1).expand_as(test)
    own_mean = test.mean(dim=(2, 3), keepdim=True).expand_as(test)
    out = {"constant_colour_db": _mean(psnr_per_image(constant, test).tolist()),
           "per_image_mean_colour_db": _mean(psnr_per_image(own_mean, test).tolist()),
           "images": int(len(test)), "train_images": int(len(train))}
    if min(test.shape[-2:]) >= 4:
        out["bicubic_x2_db"] = _mean(psnr_per_image(bicubic_round_trip(test, 2), test).tolist())
    return out


def jitter_psnr(model, loader: Iterable, convention: str, stds: Iterable[float], max_images: int | None,
                seed: int = 0, decoupled: bool = False) -> dict:
    """The notebook's ``generate_with_jitter`` at the native size: grid + N(0, std^2) noise (drawn per
    image and query, on the CPU from a generator seeded once so every device draws the same noise),
    clamped to [0, 1]; decoupled=True jitters only the hyponet's coordinates and keeps the regular
    grid for the modulation network. Scored as mean per-image PSNR against the clean image.
    Returns {str(std): psnr}; {} when decoupled is asked of a model without hyponet coordinates."""
    stds = [float(s) for s in stds]
    if decoupled and not supports_decoupled(model):
        return {}
    generator = torch.Generator().manual_seed(seed)
    scores: dict[str, list[float]] = {str(s): [] for s in stds}
    device = _device(model)
    with _inference(model):
        for images, _ in _batches(loader, max_images):
            images = images.to(device)
            B, _, H, W = images.shape
            tokens = model.encode(images)
            base = _grid(H, W, convention, B, device)
            for std in stds:
                noise = torch.randn(base.shape, generator=generator).to(device=device, dtype=base.dtype)
                jittered = (base + noise * std).clamp(0, 1)
                if decoupled:
                    pixels = decode_chunked(model, tokens, base, hyponet_coords=jittered)
                else:
                    pixels = decode_chunked(model, tokens, jittered)
                scores[str(std)] += psnr_per_image(_to_image(pixels, H, W), images).tolist()
    return {key: _mean(values) for key, values in scores.items()}


def super_resolution_notebook(model, loader: Iterable, convention: str, sizes: Iterable[int], max_images: int | None,
                              chunk: int | None = DECODE_CHUNK) -> dict:
    """The notebook's protocol: encode at the native size, decode on a size x size grid, score against
    ``F.interpolate(images, size, mode='bicubic', align_corners=False)`` (unclamped, as the notebook
    does) with per-image PSNR and SSIM. Note the reference is itself an interpolation, so this
    measures agreement with bicubic, not recovered detail (see ``super_resolution_true``).
    Returns {str(size): {'psnr', 'ssim'}}."""
    sizes = [int(s) for s in sizes]
    scores = {s: {"psnr": [], "ssim": []} for s in sizes}
    device = _device(model)
    with _inference(model):
        for images, _ in _batches(loader, max_images):
            images = images.to(device)
            B = images.shape[0]
            tokens = model.encode(images)  # encoded once, decoded at every size
            for s in sizes:
                pixels = decode_chunked(model, tokens, _grid(s, s, convention, B, device), chunk=chunk)
                sr = _to_image(pixels, s, s)
                gt = F.interpolate(images, size=(s, s), mode="bicubic", align_corners=False)
                scores[s]["psnr"] += psnr_per_image(sr, gt).tolist()
                scores[s]["ssim"] += ssim(sr, gt).tolist()
    return {str(s): {"psnr": _mean(v["psnr"]), "ssim": _mean(v["ssim"])} for s, v in scores.items()}


def bicubic_round_trip(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Area-downsample by ``factor`` (area averaging is its own antialiasing), bicubic-upsample back to
    the native size, clamp to [0, 1] (bicubic overshoots; the encoders expect images in [0, 1])."""
    H, W = images.shape[-2:]
    low = F.interpolate(images, size=(H // factor, W // factor), mode="area")
    return F.interpolate(low, size=(H, W), mode="bicubic", align_corners=False).clamp(0, 1)


def super_resolution_true(model, loader: Iterable, convention: str, max_images: int | None, factor: int = 2) -> dict:
    """A real super-resolution score: the model sees only a ``factor``-times downsampled image
    (bicubic-upsampled back to the native size, which is the only size the encoders accept), and its
    native-grid decoding is scored against the real native image. 'bicubic_*' score that upsampled
    input itself: the model adds detail only where it beats them."""
    psnrs, ssims, bic_psnrs, bic_ssims = [], [], [], []
    device = _device(model)
    with _inference(model):
        for images, _ in _batches(loader, max_images):
            images = images.to(device)
            degraded = bicubic_round_trip(images, factor)
            pred = reconstruct(model, degraded, convention)
            psnrs += psnr_per_image(pred, images).tolist()
            ssims += ssim(pred, images).tolist()
            bic_psnrs += psnr_per_image(degraded, images).tolist()
            bic_ssims += ssim(degraded, images).tolist()
    return {"psnr": _mean(psnrs), "ssim": _mean(ssims), "bicubic_psnr": _mean(bic_psnrs),
            "bicubic_ssim": _mean(bic_ssims), "factor": int(factor)}


def pooled_tokens(model, loader: Iterable, max_images: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """LP tokens mean-pooled over tokens -> (N, dim) float64 on the CPU, and the labels (None when
    the loader gives none)."""
    features, labels, device = [], [], _device(model)
    with _inference(model):
        for images, y in _batches(loader, max_images):
            features.append(model.encode(images.to(device)).mean(dim=1).double().cpu())
            labels.append(None if y is None else y.long().cpu())
    if not features:
        return torch.zeros(0, 0, dtype=torch.float64), None
    if any(y is None for y in labels):
        return torch.cat(features), None
    return torch.cat(features), torch.cat(labels)


def linear_probe(model, train_loader: Iterable, test_loader: Iterable, max_train: int | None, max_test: int | None,
                 seed: int = 0) -> dict | None:
    """Multinomial logistic regression on mean-pooled LP tokens, standardised with the training
    statistics; full-batch L-BFGS in float64 on the CPU (a convex problem with a small L2 term, so the
    optimum is unique and the result deterministic; ``seed`` only sets the starting weights).
    Returns None when any label is missing (-1) or the training set has fewer than 2 classes."""
    x_train, y_train = pooled_tokens(model, train_loader, max_train)
    x_test, y_test = pooled_tokens(model, test_loader, max_test)
    if y_train is None or y_test is None or len(y_train) == 0 or len(y_test) == 0:
        return None
    if (y_train < 0).any() or (y_test < 0).any():
        return None
    classes = torch.unique(y_train)
    if len(classes) < 2:
        return None
    # Labels -> contiguous indices over the training classes; a test class never seen in training
    # gets -1 and can only be counted wrong.
    lookup = {int(c): i for i, c in enumerate(classes)}
    t_train = torch.tensor([lookup[int(y)] for y in y_train])
    t_test = torch.tensor([lookup.get(int(y), -1) for y in y_test])

    mean = x_train.mean(dim=0)
    std = x_train.std(dim=0, unbiased=False).clamp_min(1e-8)  # constant features stay at 0
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std

    generator = torch.Generator().manual_seed(seed)
    dim, k = x_train.shape[1], len(classes)
    weight = (torch.randn(dim, k, generator=generator, dtype=torch.float64) * 0.01).requires_grad_()
    bias = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=500, tolerance_grad=1e-9,
                                  tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(x_train @ weight + bias, t_train) + 0.5 * PROBE_L2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        predicted = (x_test @ weight + bias).argmax(dim=1)
    majority = torch.bincount(t_test[t_test >= 0], minlength=k).max().item() if (t_test >= 0).any() else 0
    return {"accuracy": float((predicted == t_test).double().mean()), "chance": 1.0 / k,
            "majority": majority / len(t_test), "classes": int(k), "train_images": int(len(t_train)),
            "test_images": int(len(t_test))}


def count_params(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def grouped_conv_backward_flop(grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed,
                               output_padding, groups, output_mask, out_shape, **kwargs) -> int:
    """FLOPs of a convolution's backward, right for grouped convolutions too. torch's formula counts the
    weight gradient of a grouped convolution as if it were ungrouped (``groups`` times too many: 512x for
    Mamba's depthwise conv1d, which made a third of a training step's counted FLOPs phantom); its count of
    the input gradient is right, and so is everything for groups=1."""
    from torch.utils.flop_counter import conv_backward_flop as registered

    conv_backward_flop = getattr(registered, "__wrapped__", registered)  # the formula on shapes, unwrapped
    args = (grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed, output_padding, groups)
    flops = conv_backward_flop(*args, [output_mask[0], False], out_shape) if output_mask[0] else 0
    if output_mask[1]:
        weight = conv_backward_flop(*args, [False, True], out_shape)
        flops += weight if transposed else weight // groups
    return flops


def gflop(fn, model: torch.nn.Module) -> float:
    """GFLOP torch's FlopCounterMode counts while ``fn`` runs ``model`` (matrix products and convolutions;
    elementwise work is not counted), with grouped convolutions' backward counted right. The count must not
    depend on which kernels run: attention goes through SDPA's math backend (the counter has no formula for
    the fused CPU kernel) and the model's scans through the chunked PyTorch one (the compiled kernel is
    invisible to the counter)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from ..core.ssm import use_scan

    counter = FlopCounterMode(display=False,
                              custom_mapping={torch.ops.aten.convolution_backward: grouped_conv_backward_flop})
    with use_scan(model, "chunked"), counter, sdpa_kernel(SDPBackend.MATH):
        fn()
    return counter.get_total_flops() / 1e9


def flops_per_image(model, image_size, convention: str, queries: int | None = None) -> float:
    """GFLOP of one forward encode + decode of one image, counted by ``FlopCounterMode`` (matrix
    products and convolutions; elementwise work is not counted). ``image_size``: an int or (H, W);
    ``queries``: decode the first that many grid points instead of the full grid."""
    H, W = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    device = _device(model)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    image = torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(0)).to(device=device, dtype=dtype)
    coords = _grid(H, W, convention, 1, device).to(dtype)
    if queries is not None:
        coords = coords[:, :queries]
    with _inference(model):
        return gflop(lambda: model.decode(model.encode(image), coords), model)


def _sanitise(value):
    """Python floats/ints/dicts/lists only (tensors and numpy scalars would break json.dumps)."""
    if isinstance(value, dict):
        return {str(k): _sanitise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_sanitise(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _sanitise(value.tolist())
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def evaluate_all(model, train_loader: Iterable | None, test_loader: Iterable, eval_cfg, convention: str, image_size,
                 progress: bool = False, probe_train: int = PROBE_TRAIN_IMAGES,
                 probe_test: int = PROBE_TEST_IMAGES) -> dict:
    """Every evaluation an ``EvalConfig`` asks for, as one JSON-serialisable dict:
    'test' (full test set, batches re-cut to ``batch_size``), 'jitter' ('same' and 'decoupled'
    coordinates, each {str(std): psnr}; decoupled is {} for models without hyponet coordinates),
    'sr_notebook', 'sr_true' (factor 2), 'probe' (None when disabled, without labels, or without a
    training loader), 'params', 'gflop_per_image', and 'stages': each stage's seconds and peak memory
    (resident, and allocated on the GPU where it ran). Jitter and both SR protocols use the first
    ``sr_images`` test images. ``progress`` prints one line per finished stage."""
    console = None
    if progress:
        from rich.console import Console
        console = Console(stderr=True)

    device, stages = _device(model), {}

    def stage(name, fn):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        with PeakMemory() as memory:
            out = fn()
        stages[name] = {"seconds": time.perf_counter() - start, "peak_rss_mb": memory.peak_mb,
                        "peak_gpu_mb": gpu_peak_mib(device)}
        if console is not None:
            console.log(f"{name}: {stages[name]['seconds']:.1f} s")
        return out

    test = Rebatched(test_loader, eval_cfg.batch_size)
    few = Rebatched(test_loader, eval_cfg.batch_size, eval_cfg.sr_images)
    results = {}
    results["test"] = stage("reconstruction", lambda: evaluate_reconstruction(model, test, convention))
    # the headline PSNR in the form the configuration asks for
    form = getattr(eval_cfg, "psnr", "batch-mse")
    results["test"]["psnr_form"] = form
    results["test"]["psnr_headline"] = results["test"]["psnr_batch_mse" if form == "batch-mse" else "psnr"]
    results["jitter"] = stage("jitter", lambda: {
        "same": jitter_psnr(model, few, convention, eval_cfg.jitter_stds, None),
        "decoupled": jitter_psnr(model, few, convention, eval_cfg.jitter_stds, None, decoupled=True),
    })
    results["sr_notebook"] = stage("super-resolution (notebook)", lambda: super_resolution_notebook(
        model, few, convention, eval_cfg.sr_sizes, None))
    results["sr_true"] = stage("super-resolution (true)", lambda: super_resolution_true(model, few, convention, None))
    if eval_cfg.probe and train_loader is not None:
        results["probe"] = stage("linear probe", lambda: linear_probe(
            model, Rebatched(train_loader, eval_cfg.batch_size), Rebatched(test_loader, eval_cfg.batch_size),
            probe_train, probe_test))
    else:
        results["probe"] = None
    results["params"] = count_params(model)
    results["gflop_per_image"] = stage("flops", lambda: flops_per_image(model, image_size, convention))
    results["stages"] = stages
    return _sanitise(results)


__all__ = ["DECODE_CHUNK", "Rebatched", "bicubic_round_trip", "count_params", "decode_chunked", "evaluate_all",
           "evaluate_reconstruction", "flops_per_image", "jitter_psnr", "linear_probe", "pooled_tokens",
           "psnr_batch_mse", "psnr_per_image", "reconstruct", "reference_levels", "ssim", "super_resolution_notebook",
           "super_resolution_true", "supports_decoupled"]
