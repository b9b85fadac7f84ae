"""Section 6 of BENCHMARKS.md: firing rates and synaptic operations (Fig. 4 analog).

The OTTT_A- and BPTT-trained digits models (seed 0, the section-3 runs, reused when section 3 ran
in the same process) are run over the 360 test images with ``make_step(model,
return_stats=True)`` and ``ottt_jax.online.forward``; ``ottt_jax.metrics`` turns the spike counts
into per-layer firing rates and synaptic operations (SOPs) per sample with the model's
``layer_sizes``.

The counting is checked independently here: the spike maps themselves are recovered from the
neurons' presynaptic traces (``s[t] = â[t] − λ·â[t−1]``), and every spike's synapses are counted
by direct window sums over the next layer's 3×3 convolution (or the classifier behind the global
average pool). This is done for the digits models and for a VGG-11 at CIFAR shapes at
initialization.

Run ``python -m benchmarks.firing [--quick]`` to print the section.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from benchmarks.accuracy import LABELS, QUICK_EPOCHS, render, run_digits
from benchmarks.common import Section, Timer, figure_path, md_table, rel
from ottt_jax.xla_flags import set_default_cpu_flags

TITLE = "6. Firing rates and synaptic operations (Fig. 4 analog)"
METHODS = ("ottt_a", "bptt")
SEED = 0
VGG_SHAPE = (32, 32, 3)
VGG_BATCH = 2
VGG_STEPS = 2
#: OTTT's total firing rate counts as 'comparable' to BPTT's up to this ratio.
RATE_RATIO_TOL = 1.2


# ---------------------------------------------------------------------------------------------
# Independent counting (pure numpy)
# ---------------------------------------------------------------------------------------------


def conv_layout(vgg_cfg: Sequence[Any]) -> list[tuple[int, int]]:
    """Return, per conv of a VGG layout, ``(width, number of 'M' pools after it)``.

    The pools counted are those between the conv and the next conv (or the global average pool
    for the last one).
    """
    out: list[list[int]] = []
    for v in vgg_cfg:
        if v == "M":
            if not out:
                raise ValueError(f"vgg_cfg must start with a conv width, got {list(vgg_cfg)}")
            out[-1][1] += 1
        elif isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0:
            out.append([int(v), 0])
        else:
            raise ValueError(f"vgg_cfg entries must be positive ints or 'M', got {v!r}")
    if not out:
        raise ValueError("vgg_cfg must hold at least one conv")
    return [(w, p) for w, p in out]


def _floor_sum_pool(x: np.ndarray) -> np.ndarray:
    """2×2 stride-2 sum pool over axes 1, 2 of ``[B, H, W]``, cropping an odd last row/column."""
    b, h, w = x.shape
    h2, w2 = h // 2, w // 2
    return x[:, : 2 * h2, : 2 * w2].reshape(b, h2, 2, w2, 2).sum((2, 4))


def synapse_events(
    counts: np.ndarray, pools: int, next_width: int | None, num_classes: int
) -> np.ndarray:
    """Count the synaptic events that a layer's spikes trigger in the next weighted layer.

    Args:
      counts: spike counts ``[B, H, W, C]`` (summed over any number of steps).
      pools: 2×2 average pools between this layer and the next (each spike reaches the synapses
        of the pooled pixel it falls in; pixels cropped by a floor pool reach none).
      next_width: output channels of the next 3×3, stride-1, pad-1 conv; None when the next
        layer is the global average pool + classifier.
      num_classes: the classifier's outputs ``K`` (used when ``next_width`` is None).

    Returns:
      ``[B]``: for the conv, ``C_next · Σ_{output pixel} Σ_{3×3 window} (pooled spikes)``
      (padding carries no synapses); for the classifier, ``K · Σ (pooled spikes)``.
    """
    counts = np.asarray(counts, np.float64)
    if counts.ndim != 4:
        raise ValueError(f"counts must be [B, H, W, C], got shape {counts.shape}")
    p = counts.sum(-1)
    for _ in range(pools):
        p = _floor_sum_pool(p)
    if next_width is None:
        return num_classes * p.sum((1, 2))
    _, h, w = p.shape
    padded = np.pad(p, ((0, 0), (1, 1), (1, 1)))
    windows = sum(padded[:, i : i + h, j : j + w] for i in range(3) for j in range(3))
    return next_width * windows.sum((1, 2))


def independent_counts(
    vgg_cfg: Sequence[Any],
    num_classes: int,
    maps: Mapping[str, np.ndarray],
) -> dict[str, dict[str, float]]:
    """Count neurons, spikes, mean fan-out and exact SOPs per layer from spike maps.

    Args:
      vgg_cfg: the VGG layout (ints: conv widths, 'M': pools), no feedback.
      num_classes: ``K``.
      maps: ``{lif_name: spikes [T, B, H, W, C]}`` in network order (names sort in order).

    Returns:
      ``{layer: {'neurons', 'spikes' (per sample, all steps), 'fan_out' (mean over the layer's
      neurons: total outgoing synapses / neurons), 'sops_mean_fan' (spikes × fan_out),
      'sops_exact' (per sample, every spike counted at its own position)}}``.
    """
    layout = conv_layout(vgg_cfg)
    names = sorted(maps)
    if len(names) != len(layout):
        raise ValueError(f"maps has {len(names)} layers but vgg_cfg has {len(layout)} convs")
    out = {}
    for j, name in enumerate(names):
        m = np.asarray(maps[name], np.float64)
        if m.ndim != 5:
            raise ValueError(f"maps[{name!r}] must be [T, B, H, W, C], got shape {m.shape}")
        width, pools = layout[j]
        if m.shape[-1] != width:
            raise ValueError(f"maps[{name!r}] has {m.shape[-1]} channels, vgg_cfg says {width}")
        nxt = layout[j + 1][0] if j + 1 < len(layout) else None
        neurons = int(np.prod(m.shape[2:]))
        ones = np.ones((1, *m.shape[2:]))
        fan = float(synapse_events(ones, pools, nxt, num_classes)[0]) / neurons
        spikes = float(m.sum((0, 2, 3, 4)).mean())
        exact = float(synapse_events(m.sum(0), pools, nxt, num_classes).mean())
        out[name] = {
            "neurons": neurons,
            "spikes": spikes,
            "fan_out": fan,
            "sops_mean_fan": spikes * fan,
            "sops_exact": exact,
        }
    return out


def spikes_from_traces(traces: np.ndarray, decay: float) -> np.ndarray:
    """Recover spikes ``s[t] = â[t] − λ·â[t−1]`` (``â[−1] = 0``) from traces ``[T, ...]``.

    Raises:
      ValueError: if the result is not 0/1 (the traces do not follow ``â[t] = λâ[t−1] + s[t]``).
    """
    traces = np.asarray(traces, np.float64)
    prev = np.concatenate([np.zeros_like(traces[:1]), traces[:-1]])
    s = traces - decay * prev
    r = np.rint(s)
    if np.max(np.abs(s - r), initial=0.0) > 1e-4 or not np.all((r == 0) | (r == 1)):
        raise ValueError("traces do not follow â[t] = λ·â[t−1] + s[t] with 0/1 spikes")
    return r


# ---------------------------------------------------------------------------------------------
# Running the models
# ---------------------------------------------------------------------------------------------


def measure(model: Any, params: Any, images: np.ndarray, num_steps: int) -> dict[str, Any]:
    """Run a model over static images and collect the library's and the independent counts.

    Args:
      model: a :class:`ottt_jax.models.SpikingVGG` (no feedback, no dropout at evaluation).
      params: its parameters.
      images: ``[B, H, W, C]`` float32.
      num_steps: ``T``.

    Returns:
      ``{'logits' [T, B, K], 'stats' {layer: [T, B]}, 'maps' {layer: [T, B, H, W, C]},
      'sizes', 'rates', 'total_rate', 'sops', 'sops_per_layer', 'indep'}`` (numpy / floats).
    """
    import jax
    import jax.numpy as jnp

    from ottt_jax import metrics
    from ottt_jax.models import make_step
    from ottt_jax.online import forward

    images = jnp.asarray(images, jnp.float32)
    b, shape = images.shape[0], tuple(images.shape[1:])
    state0 = model.init_state(b, shape, train=False)
    step_stats = make_step(model, return_stats=True)
    step_plain = make_step(model)

    @jax.jit
    def run(p, x):
        (logits, stats), _ = forward(step_stats, p, state0, x, num_steps=num_steps)

        def body(st, _):  # an independent pass keeping every step's traces
            _, st = step_plain(p, st, x)
            return st, {k: v.trace for k, v in st.neurons.items()}

        _, traces = jax.lax.scan(body, state0, None, length=num_steps)
        return logits, stats, traces

    logits, stats, traces = jax.device_get(run(params, images))
    sizes = model.layer_sizes(shape)
    rates = metrics.firing_rates(stats, sizes, num_steps)
    maps = {k: spikes_from_traces(v, model.neuron.decay) for k, v in traces.items()}
    return {
        "logits": np.asarray(logits),
        "stats": {k: np.asarray(v) for k, v in stats.items()},
        "maps": maps,
        "sizes": sizes,
        "rates": {k: float(v) for k, v in rates.items()},
        "total_rate": float(metrics.total_firing_rate(rates, sizes)),
        "sops": float(metrics.sops(stats, sizes)),
        "sops_per_layer": {
            k: float(v) for k, v in metrics.sops(stats, sizes, per_layer=True).items()
        },
        "indep": independent_counts(model.cfg, model.num_classes, maps),
    }


def consistency(m: Mapping[str, Any]) -> dict[str, float]:
    """Compare the library's counts with the independent ones (max deviations).

    Returns:
      ``{'stats_vs_maps'}`` (max |spikes from stats − spikes from maps|, per sample and step),
      ``'neurons'`` (max |layer_sizes neurons − H·W·C|), ``'fan_rel'`` (max relative fan-out
      difference), ``'sops_rel'`` (|metrics.sops − Σ spikes × independent fan-out| / SOPs) and
      ``'exact_rel'`` ((exact position-aware SOPs − metrics.sops) / metrics.sops, signed).
    """
    stats, maps, sizes, ind = m["stats"], m["maps"], m["sizes"], m["indep"]
    d_stats = max(float(np.max(np.abs(stats[k] - maps[k].sum((2, 3, 4))))) for k in maps)
    d_neur = max(abs(sizes[k][0] - ind[k]["neurons"]) for k in maps)
    d_fan = max(abs(sizes[k][1] - ind[k]["fan_out"]) / ind[k]["fan_out"] for k in maps)
    indep_sops = sum(v["sops_mean_fan"] for v in ind.values())
    exact = sum(v["sops_exact"] for v in ind.values())
    scale = max(m["sops"], 1e-12)
    return {
        "stats_vs_maps": d_stats,
        "neurons": float(d_neur),
        "fan_rel": d_fan,
        "sops_rel": abs(m["sops"] - indep_sops) / scale,
        "exact_rel": (exact - m["sops"]) / scale,
    }


def consistent(c: Mapping[str, float]) -> bool:
    """Return whether the library's counts agree with the independent ones."""
    return (c["stats_vs_maps"] == 0.0 and c["neurons"] == 0 and c["fan_rel"] < 1e-9) and c[
        "sops_rel"
    ] < 1e-5


def _layer_rows(label: str, m: Mapping[str, Any]) -> list[list]:
    rows = []
    for k in sorted(m["rates"]):
        n, fan = m["sizes"][k]
        ind = m["indep"][k]
        rows.append(
            [
                label,
                k,
                n,
                f"{fan:.2f}",
                f"{ind['fan_out']:.2f}",
                f"{m['rates'][k]:.4f}",
                f"{ind['spikes']:.1f}",
                f"{m['sops_per_layer'][k]:,.0f}",
                f"{ind['sops_exact']:,.0f}",
            ]
        )
    rows.append(
        [
            label,
            "**total**",
            sum(v[0] for v in m["sizes"].values()),
            "",
            "",
            f"{m['total_rate']:.4f}",
            f"{sum(v['spikes'] for v in m['indep'].values()):.1f}",
            f"**{m['sops']:,.0f}**",
            f"{sum(v['sops_exact'] for v in m['indep'].values()):,.0f}",
        ]
    )
    return rows


_HEADER = [
    "model",
    "layer",
    "neurons",
    "fan-out (layer_sizes)",
    "fan-out (independent)",
    "firing rate",
    "spikes / sample (all steps)",
    "SOPs / sample (metrics.sops)",
    "SOPs / sample (exact, per position)",
]


def _plot(digits: Mapping[str, Mapping], vgg: Mapping[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    layers = sorted(next(iter(digits.values()))["rates"])
    groups = [*layers, "total"]
    width = 0.8 / len(digits)
    for j, (label, m) in enumerate(digits.items()):
        xs = np.arange(len(groups)) + (j - (len(digits) - 1) / 2) * width
        rates = [m["rates"][k] for k in layers] + [m["total_rate"]]
        sops = [m["sops_per_layer"][k] for k in layers] + [m["sops"]]
        axes[0].bar(xs, rates, width, color=f"C{j}", label=label)
        axes[1].bar(xs, sops, width, color=f"C{j}", label=label)
    for ax in axes[:2]:
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(groups)
        ax.set_xlabel("LIF layer (digits net [32, M, 64])")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("firing rate (spikes / neuron / step)")
    axes[0].set_title("digits test set, T = 4")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("synaptic operations per sample (SOPs, log scale)")
    axes[1].set_title("digits test set, T = 4")
    vl = sorted(vgg["rates"])
    axes[2].bar(range(len(vl)), [vgg["rates"][k] for k in vl], color="C2", label="VGG-11 at init")
    axes[2].axhline(vgg["total_rate"], color="k", ls="--", label="total (neuron-weighted)")
    axes[2].set_xticks(range(len(vl)))
    axes[2].set_xticklabels(vl, rotation=45, fontsize=8)
    axes[2].set_xlabel("LIF layer (VGG-11)")
    axes[2].set_ylabel("firing rate (spikes / neuron / step)")
    axes[2].set_title(f"VGG-11, random N(0,1) input {VGG_SHAPE}, B={VGG_BATCH}, T={VGG_STEPS}")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _gap_text(checks: Mapping[str, Mapping[str, float]]) -> str:
    return ", ".join(f"{label} {100 * c['exact_rel']:+.2f}%" for label, c in checks.items())


def _silent_text(m: Mapping[str, Any]) -> str:
    silent = [k for k in sorted(m["rates"]) if m["rates"][k] == 0.0]
    if not silent:
        return "Every VGG-11 layer spikes at initialization, so every product is exercised."
    return (
        f"VGG-11 at initialization with a random input is silent in {', '.join(silent)} (rate "
        "0), so there the check covers the fan-out only, not the spikes × fan-out products."
    )


def _vgg11_at_init() -> dict[str, Any]:
    import jax

    from ottt_jax import training
    from ottt_jax.models import vgg11

    model = vgg11(10)
    k_init, k_x = jax.random.split(jax.random.PRNGKey(SEED))
    x = jax.random.normal(k_x, (VGG_BATCH, *VGG_SHAPE))
    params = training.init_params(model, VGG_SHAPE, k_init)  # the initializers read shapes only
    return measure(model, params, np.asarray(x), VGG_STEPS)


def run(quick: bool) -> Section:
    """Measure firing rates and SOPs of trained digits models and of VGG-11; return section 6.

    Args:
      quick: use (or train) the models of section 3's quick mode (``QUICK_EPOCHS`` epochs).

    Returns:
      The section: setup, tables, figure and claims.
    """
    from ottt_jax import metrics, training
    from ottt_jax.data.digits import load_digits_split

    with Timer() as total:
        epochs = QUICK_EPOCHS if quick else None
        x_test, y_test = load_digits_split("test")
        digits, runs = {}, {}
        for method in METHODS:
            r = run_digits(method, SEED, epochs=epochs)
            runs[method] = r
            model = training.build_model(r["cfg"])
            digits[LABELS[method]] = measure(model, r["params"], x_test, r["cfg"].num_steps)
        with Timer() as tv:
            vgg = _vgg11_at_init()
        fig = figure_path("firing_rates.png")
        _plot(digits, vgg, fig)

    cfg = runs["ottt_a"]["cfg"]
    n_epochs = cfg.optim.epochs
    acc_lines = []
    for method in METHODS:
        m = digits[LABELS[method]]
        acc = float(metrics.accuracy(m["logits"], y_test))
        acc_lines.append(
            f"{LABELS[method]} {100 * acc:.2f}% "
            f"(trainer: {100 * runs[method]['test_accuracy']:.2f}%)"
        )
    rows = [row for label, m in digits.items() for row in _layer_rows(label, m)]
    table = md_table(_HEADER, rows)
    vtable = md_table(_HEADER, _layer_rows("VGG-11 (init)", vgg))
    checks = {label: consistency(m) for label, m in {**digits, "VGG-11": vgg}.items()}
    check_rows = [
        [
            label,
            f"{c['stats_vs_maps']:g}",
            f"{c['neurons']:g}",
            f"{c['fan_rel']:.1e}",
            f"{c['sops_rel']:.1e}",
            f"{100 * c['exact_rel']:+.2f}%",
        ]
        for label, c in checks.items()
    ]
    ctable = md_table(
        [
            "model",
            "max abs. diff. stats vs maps (spikes)",
            "max abs. diff. neurons",
            "max rel. fan-out diff",
            "rel. SOP diff (mean fan-out)",
            "exact − metrics.sops",
        ],
        check_rows,
    )
    mode = (
        f"**Quick mode**: the models trained {n_epochs} epochs (section 3's quick runs)."
        if quick
        else f"Full mode: the section-3 models (seed {SEED}, {n_epochs} epochs)."
    )
    setup = (
        "Setup: the OTTT_A- and BPTT-trained digits models (seed "
        f"{SEED}, `digits` preset, {n_epochs} epochs) run on the 360 test images for T = "
        f"{cfg.num_steps} steps with `ottt_jax.online.forward(make_step(model, "
        "return_stats=True), ...)`. Firing rate = spikes / (neurons × T), averaged over the "
        "test images (`metrics.firing_rates`); 'total' is the neuron-weighted mean "
        "(`metrics.total_firing_rate`). SOPs per sample = Σ_layers spikes × fan-out "
        "(`metrics.sops` with `model.layer_sizes`), the synaptic events the spikes trigger in "
        "the next weighted layer; the first conv reads the real-valued image and is not "
        "counted. The forward pass reproduces the trainer's test accuracy: "
        + "; ".join(acc_lines)
        + ". "
        + mode
    )
    check_text = (
        "Independent check of the counting. The spike maps are recovered from every step's "
        "presynaptic traces (`s[t] = â[t] − λ·â[t−1]`, asserted to be 0/1), in a second pass "
        "that does not use the model's statistics. From the maps alone the module counts the "
        "neurons; the mean fan-out (all outgoing synapses / neurons, by direct 3×3 window "
        "sums over the next conv, pooling folded in, padding without synapses, classifier: K "
        "per neuron); and the exact SOPs, where every spike is counted at its own position. "
        f"VGG-11 ({VGG_SHAPE}, 10 classes, sWS, random N(0, 1) input, batch {VGG_BATCH}, T = "
        f"{VGG_STEPS}, parameters at initialization, seed {SEED}; {tv.seconds:.1f} s "
        "including compilation):\n\n"
        + vtable
        + "\n\nAgreement between the library and the independent counts:\n\n"
        + ctable
        + "\n\nThe library's counts agree with the independent ones "
        + (
            "in every check"
            if all(consistent(c) for c in checks.values())
            else "**not** everywhere"
        )
        + " (spike counts and neurons exactly, SOPs to float32 rounding). `metrics.sops` uses each "
        "layer's *mean* fan-out, which is exact only when every neuron of a layer fires equally "
        "often; the last column is the signed gap to counting each spike at its own position. "
        "It is positive when interior neurons (9 taps into the next conv) fire more than border "
        f"ones (4 or 6 taps): {_gap_text(checks)}. {_silent_text(vgg)}"
    )
    ra, rb = digits["OTTT_A"]["total_rate"], digits["BPTT"]["total_rate"]
    sa, sb = digits["OTTT_A"]["sops"], digits["BPTT"]["sops"]
    discussion = (
        f"OTTT_A's network fires at a total rate of {ra:.4f} against BPTT's {rb:.4f} "
        f"(ratio {ra / rb:.2f}), giving {sa:,.0f} vs {sb:,.0f} SOPs per sample "
        f"(ratio {sa / sb:.2f}). Per layer: "
        + "; ".join(
            f"{k} {digits['OTTT_A']['rates'][k]:.3f} vs {digits['BPTT']['rates'][k]:.3f}"
            for k in sorted(digits["OTTT_A"]["rates"])
        )
        + ". One seed per method; the rates depend on the seed and on this tiny net, so only "
        "large differences are meaningful."
    )
    body = "\n\n".join([setup, table, f"![firing rates]({rel(fig)})", discussion, check_text])
    ok_counts = all(consistent(c) for c in checks.values())
    claims = [
        (
            "OTTT-trained SNNs fire sparsely, at rates (and SOPs) comparable to BPTT-trained ones "
            "(Fig. 4)",
            "holds" if ra <= RATE_RATIO_TOL * rb and ra < 0.5 else "misses",
            f"digits test set, T = {cfg.num_steps}: total firing rate OTTT_A {ra:.4f} vs BPTT "
            f"{rb:.4f}; SOPs/sample {sa:,.0f} vs {sb:,.0f} (criterion: OTTT rate ≤ "
            f"{RATE_RATIO_TOL}× BPTT's and < 0.5)",
        ),
        (
            "SOP counting sanity (not a paper claim): metrics.sops = Σ_layers spikes × fan-out, "
            "fan-out counted independently",
            "holds" if ok_counts else "misses",
            "; ".join(
                f"{label}: rel. diff {c['sops_rel']:.1e}, fan-out {c['fan_rel']:.1e}, "
                f"exact per-position count {100 * c['exact_rel']:+.2f}%"
                for label, c in checks.items()
            )
            + f"; VGG-11 at init: {vgg['sops']:,.0f} SOPs/sample, total rate "
            f"{vgg['total_rate']:.4f}",
        ),
    ]
    return Section(TITLE, body, figures=[rel(fig)], claims=claims, seconds=total.seconds)


if __name__ == "__main__":
    set_default_cpu_flags()  # XLA:CPU defaults of the benchmarks (ottt_jax.xla_flags)
    print(render(run(quick="--quick" in sys.argv[1:])))
