"""The PNG figures of docs/benchmarks.md: throughput (drain, push), latency, and the fairness
pictures (cumulative service per tenant, light tenants' p99 wait)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import IMAGES
from .stats import percentile

DRAIN_VS_HUEY = 1.5         # the throughput target drawn on the drain plot
LIGHT_P99_VS_FIFO = 0.05    # the fairness target drawn on the light-wait plot
SHORT = {"fairque-c1": "fairque\n1 slot", "fairque-c4": "fairque\n4 slots", "raw": "raw redis-py\nBRPOP loop",
         "huey": "Huey\n1 thread", "rq": "RQ\nSimpleWorker", "celery": "Celery\nsolo pool"}


def throughput_plots(results: dict[str, Any], reps: int, images: Path = IMAGES) -> list[Path]:
    """docs/images/bench_throughput.png (scenarios A and C) and bench_latency.png (B)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    images.mkdir(parents=True, exist_ok=True)
    a = results.get("A")
    if a:
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [3, 2]})
        items = list(a["contenders"].items())
        labels = [SHORT.get(k, v["label"]) for k, v in items]
        rates = [v["rate"] for _, v in items]
        lo = [v["rate"] - v["rate_min"] for _, v in items]
        hi = [v["rate_max"] - v["rate"] for _, v in items]
        colors = ["#1f77b4" if k.startswith("fairque") else "#7f7f7f" if k == "raw" else "#ff7f0e"
                  for k, _ in items]
        bars = ax.bar(range(len(items)), rates, yerr=[lo, hi], color=colors, capsize=4)
        for b, (k, v) in zip(bars, items, strict=True):
            extra = f"\n{v['vs_huey']:.2f}x Huey" if k.startswith("fairque") else ""
            ax.text(b.get_x() + b.get_width() / 2, max(v["rate_max"], v["rate"]) * 1.01,
                    f"{v['rate']:,.0f}{extra}", ha="center", va="bottom", fontsize=8)
        huey = a["contenders"]["huey"]["rate"]
        ax.axhline(huey * DRAIN_VS_HUEY, color="red", ls="--", lw=1,
                   label=f"target: {DRAIN_VS_HUEY}x Huey")
        ax.set_xticks(range(len(items)), labels, fontsize=8)
        ax.set_ylabel("tasks/s (median, min-max bars)")
        ax.margins(y=0.15)
        ax.set_title(f"A. drain: one worker process, pre-queued no-op tasks ({reps} reps)")
        ax.legend(fontsize=8)
        c = results.get("C")
        if c:
            lab, val, col = [], [], []
            for d in (c["single"], c["batch"]):
                for k, v in d.items():
                    lab.append(v["label"])
                    val.append(v["rate"])
                    col.append("#1f77b4" if k.startswith("fairque") else "#7f7f7f" if k == "raw" else "#ff7f0e")
            y = range(len(lab))
            ax2.barh(y, val, color=col)
            ax2.set_yticks(y, lab, fontsize=8)
            ax2.invert_yaxis()
            ax2.set_xscale("log")
            from matplotlib.ticker import FuncFormatter, NullFormatter

            ax2.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:,.0f}"))
            ax2.xaxis.set_minor_formatter(NullFormatter())
            ax2.set_xlim(min(val) / 2, max(val) * 3)
            ax2.set_xlabel("enqueued tasks/s (log)")
            ax2.set_title("C. push")
            for yi, v in zip(y, val, strict=True):
                ax2.text(v, yi, f" {v:,.0f}", va="center", fontsize=7)
        else:
            ax2.axis("off")
        fig.tight_layout()
        path = images / "bench_throughput.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    b = results.get("B")
    if b:
        fig, ax = plt.subplots(figsize=(10, 4.8))
        items = [(k, v) for k, v in b["contenders"].items() if v["ms"]]
        pcts = ["p50", "p95", "p99"]
        width = 0.8 / len(pcts)
        for j, p in enumerate(pcts):
            vals = [v["ms"][p] for _, v in items]
            xs = [i + (j - 1) * width for i in range(len(items))]
            bars = ax.bar(xs, vals, width, label=p)
            for bx, val in zip(bars, vals, strict=True):
                ax.text(bx.get_x() + bx.get_width() / 2, val, f"{val:.2f}", ha="center", va="bottom",
                        fontsize=7)
        ax.set_xticks(range(len(items)), [SHORT.get(k, v["label"]) + ("\n(queueing)" if v.get("backlog") else "")
                                          for k, v in items], fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("enqueue -> task start, ms (log)")
        ax.set_title(f"B. latency with an idle worker ({b['sizes']['n']} tasks spaced "
                     f"{b['sizes']['spacing'] * 1000:.0f} ms, median of {reps} reps)")
        ax.legend()
        fig.tight_layout()
        path = images / "bench_latency.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    return made


def as_users_plot(results: dict[str, Any], images: Path = IMAGES) -> list[Path]:
    """docs/images/bench_as_users.png: drain tasks/s and Redis CPU per task lifecycle of every
    contender of ``bench_as_users.py`` (the burst line hatched)."""
    u = results.get("U")
    if not u:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images.mkdir(parents=True, exist_ok=True)
    items = [(k, v) for k, v in u["contenders"].items() if v["rate"] == v["rate"]]
    labels = [v["label"].replace(" --", "\n--").replace(" -", "\n-", 1) for _, v in items]
    colours = ["#1f77b4" if k.startswith("fqdj") else "#7f7f7f" if k == "raw" else "#ff7f0e" for k, _ in items]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(14, 5.2))
    for axis, field, title, fmt in ((ax, "rate", "drain, tasks/s (one worker process)", "{:,.0f}"),
                                    (ax2, "lifecycle_cpu_us", "Redis CPU per task lifecycle, us", "{:.0f}")):
        vals = [v[field] for _, v in items]
        bars = axis.bar(range(len(items)), vals, color=colours)
        for b, (k, v), val in zip(bars, items, vals, strict=True):
            if k.endswith("-burst"):
                b.set_hatch("//")
            extra = f"\n{v['lifecycle_cmds']:.0f} cmds" if field == "lifecycle_cpu_us" and val == val else ""
            axis.text(b.get_x() + b.get_width() / 2, val if val == val else 0, fmt.format(val) + extra,
                      ha="center", va="bottom", fontsize=7)
        axis.set_xticks(range(len(items)), labels, fontsize=6.5, rotation=30, ha="right")
        axis.set_title(f"{title}, median of {u['reps']}", fontsize=10)
        axis.margins(y=0.15)
    fig.suptitle("As users run it: default worker modes (the hatched bar is --burst, not a production mode)",
                 fontsize=10)
    fig.tight_layout()
    path = images / "bench_as_users.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


DISPLAY = {
    "fairque": "fairque_django", "fairque-count": "fairque_django\n(count)",
    "fairque-time": "fairque_django\n(fairness=time)",
    "fairque-split": "fairque_django\n(split workers)", "fifo": "FIFO list", "rq": "RQ round_robin\n(SimpleWorker)",
    "rq-fork": "RQ round_robin\n(forking)", "celery": "Celery\nqueue/tenant",
}
COLOURS = {"fairque": "#2ca02c", "fairque-count": "#2ca02c", "fairque-time": "#98df8a", "fairque-split": "#bcbd22",
           "fifo": "#7f7f7f", "rq": "#d62728", "rq-fork": "#ff9896", "celery": "#9467bd"}


def fairness_plots(plot_runs: dict[str, Any], results: dict[str, Any], out: Callable[[str], None],
                   images: Path = IMAGES) -> list[str]:
    """docs/images/fairness_noisy_neighbour.png (scenario 1's median FIFO and fairque runs) and
    fairness_light_wait.png (light tenants' p99 wait per contender, scenarios 1 and 2)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
    except ImportError:
        out("  (matplotlib missing: no plots)")
        return []
    images.mkdir(parents=True, exist_ok=True)
    written = []
    heavy_c, light_c = "#d62728", "#1f77b4"
    if "fairque" in plot_runs and "fifo" in plot_runs:
        fig, axes = plt.subplots(1, 2, figsize=(13, 5.4), sharex=True, sharey=True)
        xmax = max(max(r.end for r in plot_runs[k].recs) - plot_runs[k].t0 for k in ("fifo", "fairque"))
        for ax, key, title in ((axes[0], "fifo", "Plain FIFO: one Redis list for everybody"),
                               (axes[1], "fairque", "fairque_django: round-robin across tenants")):
            run = plot_runs[key]
            by: dict[str, list[float]] = defaultdict(list)
            for r in run.recs:
                by[r.tenant].append(r.end - run.t0)
            t_light = run.marks.get("light", run.t0) - run.t0
            end = max(r.end for r in run.recs) - run.t0
            for tenant, ends in sorted(by.items(), key=lambda kv: kv[0] == "heavy"):
                ends.sort()
                xs = [0.0, *ends]
                ys = [0.0, *[100.0 * (i + 1) / len(ends) for i in range(len(ends))]]
                is_heavy = tenant == "heavy"
                ax.step(xs, ys, where="post", color=heavy_c if is_heavy else light_c,
                        lw=3 if is_heavy else 1.1, alpha=1.0 if is_heavy else 0.6, zorder=3 if is_heavy else 2)
            ax.axvline(t_light, color="grey", ls=":", lw=1)
            ax.annotate("light tenants enqueue", xy=(t_light, 104), xytext=(t_light + 0.03 * end, 104),
                        color="grey", fontsize=9, va="center")
            light = [r for r in run.recs if r.tenant != "heavy"]
            done = max(r.end for r in light) - run.t0
            p99 = percentile([r.wait_ms for r in light], 99)
            early = done < 0.5 * xmax  # text right of the light block, else left of it below the heavy line
            ax.annotate(f"all light tenants done at {done:.2f} s\nlight p99 wait {p99:,.0f} ms",
                        xy=(done, 100), xytext=(done + 0.08 * xmax, 62) if early else (done - 0.05 * xmax, 12),
                        ha="left" if early else "right",
                        arrowprops={"arrowstyle": "->", "color": light_c}, color=light_c, fontsize=10)
            ax.set_title(f"{title}\nmakespan {end:.2f} s", fontsize=11)
            ax.set_xlabel("seconds since the first enqueue")
            ax.set_ylim(-3, 110)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("tasks served so far (% of the tenant's own tasks)")
        n_heavy = sum(1 for r in plot_runs["fifo"].recs if r.tenant == "heavy")
        n_light_t = len({r.tenant for r in plot_runs["fifo"].recs if r.tenant != "heavy"})
        n_light = len(plot_runs["fifo"].recs) - n_heavy
        handles = [Line2D([], [], color=heavy_c, lw=3, label=f"heavy tenant ({n_heavy:,} tasks)"),
                   Line2D([], [], color=light_c, lw=1.1,
                          label=f"{n_light_t} light tenants ({n_light // max(1, n_light_t)} tasks each)")]
        axes[1].legend(handles=handles, loc="lower right")
        fig.suptitle("Noisy neighbour: cumulative tasks served per tenant (2 workers, 1 ms tasks)", fontsize=13)
        fig.tight_layout()
        path = images / "fairness_noisy_neighbour.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))
    panels = [(sc, label) for sc, label in (("scenario_1", "1. noisy neighbour (all tasks 1 ms)"),
                                            ("scenario_2", "2. expensive neighbour (heavy 10 ms, light 1 ms)"))
              if results.get(sc, {}).get("contenders")]
    if panels:
        fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5.4), sharey=True, squeeze=False)
        lo, hi = math.inf, 0.0
        for ax, (sc, label) in zip(axes[0], panels, strict=True):
            rows = [(n, r["light_wait_ms"]["p99"]) for n, r in results[sc]["contenders"].items()
                    if not math.isnan(r.get("light_wait_ms", {}).get("p99", math.nan))]
            for i, (name, v) in enumerate(rows):
                ax.bar(i, v, 0.7, color=COLOURS.get(name, "#17becf"))
                ax.text(i, v * 1.1, f"{v:,.0f} ms", ha="center", va="bottom", fontsize=9,
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
                lo, hi = min(lo, v), max(hi, v)
            ax.set_xticks(range(len(rows)), [DISPLAY.get(n, n) for n, _ in rows], fontsize=9)
            fifo = results[sc]["contenders"].get("fifo", {}).get("light_wait_ms", {}).get("p99")
            if sc == "scenario_1" and fifo:
                target = fifo * LIGHT_P99_VS_FIFO
                ax.axhline(target, color="#2ca02c", ls="--", lw=1.2, zorder=0)
                ax.legend(handles=[Line2D([], [], color="#2ca02c", ls="--", lw=1.2,
                                          label=f"target for fairque_django: 5% of FIFO ({target:,.0f} ms)")],
                          loc="upper right", fontsize=9)
                lo = min(lo, target)
            ax.set_title(label, fontsize=11)
            ax.grid(axis="y", alpha=0.3, which="both")
        axes[0][0].set_yscale("log")
        axes[0][0].set_ylim(lo / 3, hi * 4)
        axes[0][0].set_ylabel("light tenants' p99 wait, enqueue -> start (ms, log scale)")
        fig.suptitle("How long light tenants wait next to a noisy tenant (p99, lower is better; 2 workers each)",
                     fontsize=12)
        fig.tight_layout()
        path = images / "fairness_light_wait.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))
    return written


def caps_plot(capped: Any, uncapped: Any, medians: dict[str, dict[str, float]], sizes: dict[str, Any],
              slots: int, cap: int, images: Path = IMAGES) -> list[Path]:
    """docs/images/limits_caps.png: the light tenants' waits with and without the heavy tenant's
    cap (phase 1, distribution), and the slots busy over time in the round's median runs."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  (matplotlib missing: no plot)")
        return []
    images.mkdir(parents=True, exist_ok=True)
    heavy_c, light_c, cap_c, unc_c = "#d62728", "#1f77b4", "#2ca02c", "#7f7f7f"
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), gridspec_kw={"width_ratios": [1, 1.3, 1.3]})
    ax = axes[0]
    for run, colour, name in ((uncapped, unc_c, "uncapped"), (capped, cap_c, f"heavy capped at {cap}")):
        waits = sorted(r.wait_ms for r in run.recs if r.tenant != "heavy" and r.idx < run.n_trickle)
        ys = [100.0 * (i + 1) / len(waits) for i in range(len(waits))]
        p99 = percentile(waits, 99)
        ax.step(waits, ys, where="post", color=colour, lw=1.8, label=f"{name}: p99 {p99:,.1f} ms")
        ax.axvline(p99, color=colour, ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("light task wait, push -> start (ms, log)")
    ax.set_ylabel("% of the light tasks of phase 1")
    ratio = medians["capped"]["light_p99_ms"] / medians["uncapped"]["light_p99_ms"]
    ax.set_title(f"Light waits, phase 1 ({sizes['rate']:.0f}/s Poisson)\nmedian p99 capped/uncapped "
                 f"{100 * ratio:.1f} % (target <= 5 %)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3, which="both")
    for ax, run, title, key in ((axes[1], uncapped, "uncapped", "uncapped"),
                                (axes[2], capped, f"heavy capped at {cap} of {slots}", "capped")):
        end = max(r.end for r in run.recs)
        step = 0.005
        n = int((end - run.t0) / step) + 1
        heavy = [0] * n
        light = [0] * n
        for r in run.recs:  # bodies running at each sample time t0 + i * step
            sink = heavy if r.tenant == "heavy" else light
            for i in range(max(0, math.ceil((r.start - run.t0) / step)), min(n, math.ceil((r.end - run.t0) / step))):
                sink[i] += 1
        xs = [i * step for i in range(n)]
        light_end = max(r.end for r in run.recs if r.tenant != "heavy")
        ax.axvspan(run.phase2_at - run.t0, light_end - run.t0, color="#ffdd57", alpha=0.35, lw=0, zorder=0,
                   label="phase 2: light backlog")
        ax.stackplot(xs, heavy, light, colors=[heavy_c, light_c], alpha=0.85, step="post", zorder=2,
                     labels=["heavy (500 ms tasks)", "20 light tenants (5 ms tasks)"])
        ax.axhline(slots, color="black", lw=0.8)
        m = medians[key]
        ax.set_title(f"Slots busy, {title}: heavy {m['heavy_tasks_per_s']:.1f} tasks/s;\nutilisation while light "
                     f"work ready, phase 2: {100 * m['util_backlog']:.1f} %", fontsize=10)
        ax.set_xlabel("seconds since the heavy batch")
        ax.set_ylim(0, slots + 2)
        ax.legend(fontsize=7, loc="upper right", ncol=3)
    axes[1].set_ylabel("task bodies running (of 8 slots)")
    fig.suptitle("A heavy tenant capped at 2 of 8 slots, 20 light tenants (runfairworker --concurrency 8)",
                 fontsize=12)
    fig.tight_layout()
    path = images / "limits_caps.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]
