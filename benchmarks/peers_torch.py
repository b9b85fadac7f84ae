"""The SpikingJelly side of the peer benchmark (needs ``pip install -e ".[peers]"``).

SpikingJelly 2.0's own OTTT: the authors' VGG-11 sWS as
``spikingjelly.activation_based.model.spiking_vggws_ottt.ottt_spiking_vggws`` (configuration
``'S'``: 64C3-128C3-AP2-256C3-256C3-AP2-512C3-512C3-AP2-512C3-512C3-GAP-FC, 9,228,362
parameters at K = 10) trained by ``learning.online_learning.ottt_online_training`` (OTTT_A:
``online=False``, gradients summed over T and one update; OTTT_O: ``online=True``, an update per
step). BPTT builds the same network with the ordinary ``neuron.LIFNode`` (no trace, gradients
through time) and backpropagates the summed loss once. Every neuron is the paper's LIF: τ = 2
(λ = 0.5), V_th = 1, soft reset, detached reset, sigmoid surrogate with α = 4.

torch is imported only here and only when a worker runs; it is never a dependency of ottt_jax.
"""

from __future__ import annotations

import time
from importlib import metadata

from benchmarks.train_iteration import METHODS, synthetic_batch


def build_model(method: str, num_classes: int = 10):
    """Return SpikingJelly's VGG-11 sWS for ``method`` (OTTTLIFNode for OTTT, LIFNode for BPTT)."""
    from spikingjelly.activation_based import neuron, surrogate
    from spikingjelly.activation_based.model.spiking_vggws_ottt import ottt_spiking_vggws

    if method not in METHODS:
        raise ValueError(f"the SpikingJelly side runs {', '.join(METHODS)}; got {method!r}")
    node = neuron.LIFNode if method == "bptt" else neuron.OTTTLIFNode
    return ottt_spiking_vggws(
        spiking_neuron=node,
        num_classes=num_classes,
        tau=2.0,
        decay_input=False,
        v_threshold=1.0,
        v_reset=None,
        detach_reset=True,
        surrogate_function=surrogate.Sigmoid(alpha=4.0),
    )


def make_loss(num_steps: int, beta: float = 0.05):
    """Return the per-step loss ``L[t] = ((1−β)·CE + β·MSE(out_t, onehot)) / T`` (as ours)."""
    import torch.nn.functional as F

    def loss_t(out, labels):
        onehot = F.one_hot(labels, out.shape[-1]).to(out.dtype)
        return ((1.0 - beta) * F.cross_entropy(out, labels) + beta * F.mse_loss(out, onehot)) / (
            num_steps
        )

    return loss_t


def run_worker(
    method: str,
    batch: int,
    num_steps: int,
    size: int,
    iters: int,
    seed: int,
    lr: float = 0.1,
    momentum: float = 0.9,
) -> dict:
    """Build, warm up once, and time ``iters`` training iterations on one fixed batch.

    Args:
      method: 'ottt_a', 'ottt_o' or 'bptt'.
      batch: B.
      num_steps: T.
      size: the image side (CIFAR-10: 32).
      iters: timed iterations after one warm-up iteration.
      seed: the input seed (:func:`benchmarks.train_iteration.synthetic_batch`).
      lr: SGD learning rate.
      momentum: SGD momentum.

    Returns:
      ``{'side', 'method', 'params', 'times', 'losses', 'update_norm', 'threads', 'version'}``:
      seconds per timed iteration, the loss of every iteration (warm-up first), and the L2 norm
      of the total parameter change.
    """
    import torch
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.learning.online_learning import ottt_online_training

    torch.manual_seed(seed)
    model = build_model(method)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    loss_t = make_loss(num_steps)
    x, y = synthetic_batch(batch, (size, size, 3), 10, seed)
    image = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
    labels = torch.from_numpy(y)
    x_seq = image.unsqueeze(1).repeat(1, num_steps, 1, 1, 1)  # [B, T, C, H, W]
    y_seq = labels.unsqueeze(1).repeat(1, num_steps)  # [B, T]
    start = [p.detach().clone() for p in model.parameters()]

    def iteration() -> float:
        if method == "bptt":
            opt.zero_grad()
            loss = sum(loss_t(model(image), labels) for _ in range(num_steps))
            loss.backward()
            opt.step()
            value = float(loss.detach())
        else:
            value, _ = ottt_online_training(
                model, opt, x_seq, y_seq, loss_t, online=method == "ottt_o"
            )
            value = float(value)
        functional.reset_net(model)
        return value

    losses, times = [iteration()], []
    for _ in range(iters):
        t0 = time.perf_counter()
        losses.append(iteration())
        times.append(time.perf_counter() - t0)
    with torch.no_grad():
        moved = sum(float(((p - s) ** 2).sum()) for p, s in zip(model.parameters(), start))
    return {
        "side": "spikingjelly",
        "method": method,
        "params": int(sum(p.numel() for p in model.parameters())),
        "times": times,
        "losses": losses,
        "update_norm": moved**0.5,
        "threads": torch.get_num_threads(),
        "version": f"spikingjelly {metadata.version('spikingjelly')}, torch {torch.__version__}",
    }
