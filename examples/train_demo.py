#!/usr/bin/env python
"""Produce the bundled demo W&B runs for reportgen.

Trains real (tiny, NumPy-only, CPU) models and logs them with the real
``wandb`` client in OFFLINE mode:

* GRPO: a tabular softmax policy emits tokens on a toy sequence task and is
  trained with PPO-style clipped updates and group-relative advantages.
  Gradients are derived by hand.
* SFT: a one-hidden-layer tanh MLP regresses a synthetic teacher network with
  SGD + momentum.

Every run is trained in its own subprocess (``--only NAME``), so the run that
crashes with an uncaught exception does not stop the rest of the sweep and
wandb records its non-zero exit code and traceback.

Usage::

    python examples/train_demo.py --out examples/wandb          # regenerate
    python examples/train_demo.py --out /tmp/x --only sft-lr3e-2 # one run

By default the output directory is deleted first (``--no-clean`` keeps it); the
script refuses to delete a directory that does not look like its own output.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

PROJECT = "reportgen-demo"
ENTITY = "demo"

# --------------------------------------------------------------------------
# Sweep definition. Every pathology comes from the config, not from fake data.
# --------------------------------------------------------------------------

RL_DEFAULTS = {
    "algo": "grpo",
    "steps": 600,
    "seed": 0,
    "actor": {
        "lr": 1e-2,
        "entropy_coef": 0.03,
        "clip_eps": 0.2,
        "ppo_epochs": 4,
        "ppo_mini_batches": 4,
        "max_grad_norm": 1.0,
        "lr_schedule": "cosine",
        "warmup_steps": 20,
    },
    "rollout": {"n_prompts": 8, "group_size": 8, "max_response_length": 24},
    "task": {"vocab_size": 6, "target_len": 12, "allowed_per_position": 2, "task_seed": 1234},
}

SFT_DEFAULTS = {
    "algo": "sft",
    "steps": 500,
    "seed": 0,
    "optim": {
        "lr": 3e-2,
        "momentum": 0.9,
        "batch_size": 64,
        "max_grad_norm": 5.0,
        "lr_schedule": "cosine",
        "warmup_steps": 20,
    },
    "model": {"in_dim": 16, "hidden": 32},
    "data": {"n_train": 2048, "n_val": 512, "noise": 0.1, "data_seed": 99, "val_every": 10},
}


def _merge(base: dict, over: dict) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


RUNS = [
    # --- GRPO ---------------------------------------------------------------
    dict(
        name="grpo-lr1e-2-ent0.03-len12",
        kind="rl",
        group="grpo-sweep",
        tags=["grpo", "demo", "healthy"],
        note="healthy RL, long responses (target length 12)",
        config=_merge(RL_DEFAULTS, {"seed": 0}),
    ),
    dict(
        name="grpo-lr1e-2-ent0.03-len4",
        kind="rl",
        group="grpo-sweep",
        tags=["grpo", "demo", "healthy"],
        note="healthy RL, short responses (target length 4)",
        config=_merge(RL_DEFAULTS, {"seed": 1, "task": {"target_len": 4}}),
    ),
    dict(
        name="grpo-lr1e-2-ent0.05-clip0.3",
        kind="rl",
        group="grpo-sweep",
        tags=["grpo", "demo", "healthy"],
        note="healthy RL, wider clip range and more entropy bonus",
        config=_merge(RL_DEFAULTS, {"seed": 2, "actor": {"entropy_coef": 0.05, "clip_eps": 0.3}}),
    ),
    dict(
        name="grpo-lr3e-1-ent0",
        kind="rl",
        group="grpo-sweep",
        tags=["grpo", "demo", "entropy-collapse"],
        note="no entropy bonus + very high constant lr: policy turns deterministic early and stalls below the best score",
        config=_merge(
            RL_DEFAULTS,
            {"seed": 3, "actor": {"lr": 3e-1, "entropy_coef": 0.0, "lr_schedule": "constant"}},
        ),
    ),
    dict(
        name="grpo-lr1e-2-ent0.03-oom",
        kind="rl",
        group="grpo-sweep",
        tags=["grpo", "demo", "crash"],
        note="data loader raises CUDA OOM at step 350 (uncaught, exit code 1)",
        config=_merge(RL_DEFAULTS, {"seed": 4, "data_loader": {"fail_at_step": 350}}),
    ),
    # --- SFT ----------------------------------------------------------------
    dict(
        name="sft-lr3e-2",
        kind="sft",
        group="sft-sweep",
        tags=["sft", "demo", "healthy"],
        note="healthy supervised regression",
        config=_merge(SFT_DEFAULTS, {"seed": 0}),
    ),
    dict(
        name="sft-lr1e-2",
        kind="sft",
        group="sft-sweep",
        tags=["sft", "demo", "healthy"],
        note="healthy supervised regression, smaller lr (slower)",
        config=_merge(SFT_DEFAULTS, {"seed": 1, "optim": {"lr": 1e-2}}),
    ),
    dict(
        name="sft-lr2e0-noclip",
        kind="sft",
        group="sft-sweep",
        tags=["sft", "demo", "diverged"],
        note="lr far too high, no grad clipping: loss dips, explodes once warmup raises lr, overflows to inf/NaN; run keeps logging",
        config=_merge(
            SFT_DEFAULTS,
            {"seed": 2, "optim": {"lr": 2.0, "max_grad_norm": None, "warmup_steps": 50}},
        ),
    ),
]
RUNS_BY_NAME = {r["name"]: r for r in RUNS}


def run_id(name: str) -> str:
    """Stable 8-char run id derived from the run name (ids survive regeneration)."""
    return hashlib.sha1(name.encode()).hexdigest()[:8]


def lr_at(step: int, base: float, schedule: str, warmup: int, total: int) -> float:
    if schedule == "constant":
        return base
    if step < warmup:
        return base * (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * frac)))


# --------------------------------------------------------------------------
# GRPO on a toy token task
# --------------------------------------------------------------------------


class ToyTokenTask:
    """K prompts; for prompt k and position i < target_len, a small set of tokens
    is acceptable. The response ends when the policy emits EOS (action V) or hits
    max_response_length (then it is clipped). Score = fraction of the target
    positions filled with an acceptable token - 0.5 * |len - target_len| / target_len.
    """

    def __init__(self, cfg: dict, n_prompts: int, max_len: int):
        rng = np.random.default_rng(cfg["task_seed"])
        self.V = cfg["vocab_size"]
        self.L = cfg["target_len"]
        self.max_len = max_len
        allowed = np.zeros((n_prompts, max_len, self.V), dtype=bool)
        for k in range(n_prompts):
            for i in range(self.L):
                allowed[k, i, rng.choice(self.V, cfg["allowed_per_position"], replace=False)] = True
        self.allowed = allowed

    def score(self, prompts, tokens, lengths):
        len(prompts)
        pos = np.arange(self.max_len)[None, :]
        valid = (pos < np.minimum(lengths, self.L)[:, None]) & (tokens >= 0) & (tokens < self.V)
        tok = np.where(valid, tokens, 0)
        hit = self.allowed[prompts[:, None], pos, tok] & valid
        return hit.sum(1) / self.L - 0.5 * np.abs(lengths - self.L) / self.L


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


class SimulatedDataLoader:
    """Yields prompt batches; optionally blows up like a real OOM would."""

    def __init__(self, n_prompts: int, fail_at_step: int | None):
        self.n_prompts = n_prompts
        self.fail_at_step = fail_at_step

    def batch(self, step: int) -> np.ndarray:
        if self.fail_at_step is not None and step == self.fail_at_step:
            # what a collate_fn that pins a huge padded batch to the GPU would hit
            raise RuntimeError(
                "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.65 GiB total "
                "capacity; 21.12 GiB already allocated; 1.31 GiB free)"
            )
        return np.arange(self.n_prompts)


def train_rl(run, cfg: dict, log_every: int = 100) -> None:
    a, ro = cfg["actor"], cfg["rollout"]
    K, G, T = ro["n_prompts"], ro["group_size"], ro["max_response_length"]
    task = ToyTokenTask(cfg["task"], K, T)
    _V, EOS, A = task.V, task.V, task.V + 1
    rng = np.random.default_rng(cfg["seed"])
    loader = SimulatedDataLoader(K, cfg.get("data_loader", {}).get("fail_at_step"))

    theta = np.zeros((K, T, A))  # tabular logits: (prompt, position) -> action
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    adam_t = 0
    b1, b2, eps = 0.9, 0.999, 1e-8
    N = K * G

    for step in range(cfg["steps"]):
        prompts = np.repeat(loader.batch(step), G)
        # ---- rollout ------------------------------------------------------
        tokens = np.full((N, T), -1)
        old_lp = np.zeros((N, T))
        mask = np.zeros((N, T), dtype=bool)
        alive = np.ones(N, dtype=bool)
        lengths = np.full(N, T)
        for t in range(T):
            lp = _log_softmax(theta[prompts, t])
            u = rng.random(N)[:, None]
            act = np.minimum((np.exp(lp).cumsum(1) < u).sum(1), A - 1)
            mask[:, t] = alive
            tokens[alive, t] = act[alive]
            old_lp[:, t] = lp[np.arange(N), act]
            ended = alive & (act == EOS)
            lengths[ended] = t
            alive &= ~ended
        clipped_resp = alive  # never emitted EOS
        scores = task.score(prompts, tokens, lengths)
        # ---- group-relative advantages -------------------------------------
        r = scores.reshape(K, G)
        adv = ((r - r.mean(1, keepdims=True)) / (r.std(1, keepdims=True) + 1e-6)).reshape(N)

        n_idx, t_idx = np.nonzero(mask)
        tok_act, tok_old, tok_adv = tokens[n_idx, t_idx], old_lp[n_idx, t_idx], adv[n_idx]
        tok_p = prompts[n_idx]

        lr = lr_at(step, a["lr"], a["lr_schedule"], a["warmup_steps"], cfg["steps"])
        stats = {"entropy": [], "kl": [], "clipfrac": [], "grad_norm": [], "loss": []}
        for _ in range(a["ppo_epochs"]):
            for mb in np.array_split(rng.permutation(N), a["ppo_mini_batches"]):
                in_mb = np.zeros(N, dtype=bool)
                in_mb[mb] = True
                sel = in_mb[n_idx]
                P, Tt, act, olp, ad = (
                    tok_p[sel],
                    t_idx[sel],
                    tok_act[sel],
                    tok_old[sel],
                    tok_adv[sel],
                )
                M = len(P)
                logpi = _log_softmax(theta[P, Tt])
                pi = np.exp(logpi)
                new_lp = logpi[np.arange(M), act]
                ratio = np.exp(new_lp - olp)
                l1 = -ad * ratio
                l2 = -ad * np.clip(ratio, 1 - a["clip_eps"], 1 + a["clip_eps"])
                is_clipped = l2 > l1
                pg_loss = np.maximum(l1, l2).mean()
                ent = -(pi * logpi).sum(1)
                # d loss / d logits, by hand
                dl_dlp = np.where(is_clipped, 0.0, -ad * ratio)
                onehot = np.zeros_like(pi)
                onehot[np.arange(M), act] = 1.0
                g = dl_dlp[:, None] * (onehot - pi)
                g += a["entropy_coef"] * pi * (logpi + ent[:, None])  # -coef * dH/dz
                g /= M
                grad = np.zeros_like(theta)
                np.add.at(grad, (P, Tt), g)
                gnorm = float(np.sqrt((grad**2).sum()))
                if a["max_grad_norm"] and gnorm > a["max_grad_norm"]:
                    grad *= a["max_grad_norm"] / gnorm
                adam_t += 1
                m = b1 * m + (1 - b1) * grad
                v = b2 * v + (1 - b2) * grad**2
                mhat, vhat = m / (1 - b1**adam_t), v / (1 - b2**adam_t)
                theta -= lr * mhat / (np.sqrt(vhat) + eps)

                stats["entropy"].append(ent.mean())
                stats["kl"].append((olp - new_lp).mean())
                stats["clipfrac"].append(is_clipped.mean())
                stats["grad_norm"].append(gnorm)
                stats["loss"].append(pg_loss)

        metrics = {
            "actor/entropy": float(np.mean(stats["entropy"])),
            "actor/ppo_kl": float(np.mean(stats["kl"])),
            "actor/pg_clipfrac": float(np.mean(stats["clipfrac"])),
            "actor/grad_norm": float(np.mean(stats["grad_norm"])),
            "actor/pg_loss": float(np.mean(stats["loss"])),
            "response_length/mean": float(lengths.mean()),
            "response_length/clip_ratio": float(clipped_resp.mean()),
            "critic/score/mean": float(scores.mean()),
            "lr": lr,
        }
        if run is not None:
            run.log(metrics, step=step)
        if step % log_every == 0 or step == cfg["steps"] - 1:
            print(
                f"step {step:4d} | score {metrics['critic/score/mean']:+.3f} | "
                f"entropy {metrics['actor/entropy']:.3f} | len {metrics['response_length/mean']:.2f} | "
                f"kl {metrics['actor/ppo_kl']:+.2e} | clipfrac {metrics['actor/pg_clipfrac']:.3f}",
                flush=True,
            )


# --------------------------------------------------------------------------
# SFT: tiny MLP regression
# --------------------------------------------------------------------------


def train_sft(run, cfg: dict, log_every: int = 100) -> None:
    o, md, d = cfg["optim"], cfg["model"], cfg["data"]
    D, H = md["in_dim"], md["hidden"]
    drng = np.random.default_rng(d["data_seed"])
    tW1 = drng.normal(size=(D, 16)) / math.sqrt(D)
    tW2 = drng.normal(size=(16, 1)) * 1.5 / math.sqrt(16)
    X = drng.normal(size=(d["n_train"] + d["n_val"], D))
    Y = np.tanh(X @ tW1) @ tW2 + d["noise"] * drng.normal(size=(len(X), 1))
    Xtr, Ytr, Xva, Yva = X[: d["n_train"]], Y[: d["n_train"]], X[d["n_train"] :], Y[d["n_train"] :]

    rng = np.random.default_rng(cfg["seed"])
    params = {
        "W1": rng.normal(size=(D, H)) / math.sqrt(D),
        "b1": np.zeros(H),
        "W2": rng.normal(size=(H, 1)) / math.sqrt(H),
        "b2": np.zeros(1),
    }
    vel = {k: np.zeros_like(p) for k, p in params.items()}

    def forward(x):
        h = np.tanh(x @ params["W1"] + params["b1"])
        return h, h @ params["W2"] + params["b2"]

    bs = o["batch_size"]
    order = rng.permutation(len(Xtr))
    cursor = 0
    for step in range(cfg["steps"]):
        if cursor + bs > len(order):
            order, cursor = rng.permutation(len(Xtr)), 0
        idx = order[cursor : cursor + bs]
        cursor += bs
        x, y = Xtr[idx], Ytr[idx]
        with np.errstate(over="ignore", invalid="ignore"):
            h, yhat = forward(x)
            err = yhat - y
            loss = float(np.mean(err**2))
            dy = 2.0 * err / bs
            grads = {
                "W2": h.T @ dy,
                "b2": dy.sum(0),
            }
            dh = (dy @ params["W2"].T) * (1.0 - h**2)
            grads["W1"] = x.T @ dh
            grads["b1"] = dh.sum(0)
            gnorm = float(np.sqrt(sum(float((g**2).sum()) for g in grads.values())))
            if o["max_grad_norm"] and gnorm > o["max_grad_norm"]:
                for g in grads.values():
                    g *= o["max_grad_norm"] / gnorm
            lr = lr_at(step, o["lr"], o["lr_schedule"], o["warmup_steps"], cfg["steps"])
            for k in params:
                vel[k] = o["momentum"] * vel[k] + grads[k]
                params[k] -= lr * vel[k]
            metrics = {"train/loss": loss, "lr": lr, "grad_norm": gnorm}
            if step % d["val_every"] == 0 or step == cfg["steps"] - 1:
                metrics["val/loss"] = float(np.mean((forward(Xva)[1] - Yva) ** 2))
        if run is not None:
            run.log(metrics, step=step)
        if step % log_every == 0 or step == cfg["steps"] - 1:
            val = metrics.get("val/loss", float("nan"))
            print(
                f"step {step:4d} | train/loss {loss:.4g} | val/loss {val:.4g} | grad_norm {gnorm:.4g}",
                flush=True,
            )
            if not math.isfinite(loss):
                print("warning: loss is not finite", flush=True)


# --------------------------------------------------------------------------
# Environment, orchestration
# --------------------------------------------------------------------------

_HERMETIC_MARK = "REPORTGEN_DEMO_HERMETIC"


def make_hermetic_env() -> None:
    """Isolate wandb from the user's config/cache/credentials and any parent service."""
    os.environ["WANDB_SILENT"] = "true"
    os.environ["WANDB_ERROR_REPORTING"] = "false"
    for var in ("WANDB_SERVICE", "WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR", "WANDB_RUN_ID"):
        os.environ.pop(var, None)
    if os.environ.get(_HERMETIC_MARK) != "1":
        tmp = tempfile.mkdtemp(prefix="reportgen-demo-wandb-")
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        for var, sub in (
            ("WANDB_CONFIG_DIR", "config"),
            ("WANDB_CACHE_DIR", "cache"),
            ("WANDB_DATA_DIR", "data"),
        ):
            os.environ[var] = os.path.join(tmp, sub)
            os.makedirs(os.environ[var], exist_ok=True)
        os.environ[_HERMETIC_MARK] = "1"


def run_one(name: str, out: Path) -> None:
    """Train one run in this process. Exceptions are deliberately NOT caught."""
    import wandb

    spec = RUNS_BY_NAME[name]
    out.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        mode="offline",
        project=PROJECT,
        entity=ENTITY,
        id=run_id(name),
        name=name,
        group=spec["group"],
        job_type="train" if spec["kind"] == "rl" else "sft",
        tags=spec["tags"],
        notes=spec["note"],
        config=spec["config"],
        dir=str(out),
        settings=wandb.Settings(
            silent=True,
            console="wrap",
            disable_git=True,
            disable_code=True,
            save_code=False,
            x_disable_stats=True,
        ),
    )
    print(f"[{name}] start: kind={spec['kind']} id={run.id} -- {spec['note']}", flush=True)
    t0 = time.time()
    (train_rl if spec["kind"] == "rl" else train_sft)(run, spec["config"])
    print(f"[{name}] done in {time.time() - t0:.1f}s", flush=True)
    run.finish()


def _looks_like_our_output(out: Path) -> bool:
    if not out.exists():
        return True
    entries = {p.name for p in out.iterdir()}
    return entries <= {"wandb"}


def prune(out: Path) -> None:
    wdir = out / "wandb"
    if not wdir.exists():
        return
    for p in list(wdir.iterdir()):
        if p.is_symlink() or (p.is_file() and p.name.startswith("debug")):
            p.unlink()
    for run_dir in wdir.glob("offline-run-*"):
        for sub in ("logs", "tmp"):
            shutil.rmtree(run_dir / sub, ignore_errors=True)
        for p in run_dir.glob("debug*.log"):
            p.unlink()


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--out", default="examples/wandb", help="wandb dir= (runs land in OUT/wandb/offline-run-*)"
    )
    ap.add_argument(
        "--only", choices=sorted(RUNS_BY_NAME), help="train a single run in this process"
    )
    ap.add_argument("--no-clean", action="store_true", help="do not delete OUT before the sweep")
    ap.add_argument(
        "--no-prune", action="store_true", help="keep logs/, tmp/, debug*.log, latest-run"
    )
    ap.add_argument(
        "-j", "--jobs", type=int, default=4, help="runs trained in parallel subprocesses"
    )
    args = ap.parse_args()
    out = Path(args.out).resolve()
    make_hermetic_env()

    if args.only:
        run_one(args.only, out)
        return 0

    if not args.no_clean and out.exists():
        if not _looks_like_our_output(out):
            print(f"refusing to delete {out}: it holds more than a wandb/ folder", file=sys.stderr)
            return 2
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)

    child_env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    t0 = time.time()

    def launch(spec):
        t = time.time()
        proc = subprocess.run(
            # paths as the user gave them (children share our cwd), so the run
            # metadata does not carry absolute paths of the machine
            [sys.executable, sys.argv[0], "--out", args.out, "--only", spec["name"]],
            env=child_env,
            capture_output=True,
            text=True,
        )
        return spec, proc, time.time() - t

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(launch, RUNS))

    unexpected = 0
    for spec, proc, dt in results:
        expect_fail = "crash" in spec["tags"]
        status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
        flag = "" if (proc.returncode != 0) == expect_fail else "  <-- UNEXPECTED"
        unexpected += bool(flag)
        print(
            f"{spec['name']:32s} id={run_id(spec['name'])} {status:8s} {dt:5.1f}s  {spec['note']}{flag}"
        )
        if flag:
            sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
    if not args.no_prune:
        prune(out)
    print(f"sweep finished in {time.time() - t0:.1f}s -> {out / 'wandb'}")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
