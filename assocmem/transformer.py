r"""A small causal transformer, its training, its activations and the N-D experiment (chapter 6).

The model is GPT-like: token embeddings plus learned positions, ``n_layers`` pre-norm blocks
(``x + Attn(LN(x))`` then ``x + MLP(LN(x))``, causal multi-head attention, a GELU MLP of width
``mlp_ratio * d_emb``), a final layer norm and an untied output head. [NBDH24] count the parameters
of attention and feed-forward layers only, :math:`N \approx A\,l\,d_{emb}^2` (:math:`A = 12` here:
:math:`4d^2` in attention, :math:`8d^2` in the MLP); :func:`parameter_counts` gives that count and
the rest. Training (:func:`train_language_model`) checkpoints the model, the optimiser, the random
state and the loss curves, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import _validate as check
from ._io import atomic_write
from .corpora import Corpus, named_corpus
from .fitting import PowerLawFit, fit_power_law
from .hopfield import global_energy, layer_energy
from .sweep import experiment
from .theory.volume import log_ball_gaussian_integral

__all__ = [
    "CausalTransformer",
    "parameter_counts",
    "sample_windows",
    "spread_subset",
    "evaluate_loss",
    "TrainingRun",
    "train_language_model",
    "last_layer_activations",
    "nearest_neighbour_distances",
    "mean_squared_gap",
    "paper_gap",
    "balanced_data_size",
    "balanced_sizes",
    "BalanceFit",
    "balance_exponent",
    "flag_diverged",
    "spread_windows",
    "normalised_states",
    "energy_profile",
    "nd_balance",
    "loss_floor",
    "activation_geometry",
]


class CausalTransformer(nn.Module):
    """A pre-norm causal transformer language model with learned positional embeddings.

    Parameters
    ----------
    vocab_size, d_emb, n_layers, n_heads, context : int
        Vocabulary size, embedding width (divisible by ``n_heads``), number of blocks, attention heads
        and the longest sequence (number of learned positions).
    mlp_ratio : int
        Width of the hidden MLP layer in units of ``d_emb`` (4 as in GPT-2).
    seed : int
        Seed of the initialisation (a private ``torch.Generator``; the global RNG is not touched).
    device, dtype :
        Where and in which floating type the parameters live.
    """

    def __init__(self, vocab_size: int, d_emb: int = 64, n_layers: int = 2, n_heads: int = 4,
                 context: int = 64, mlp_ratio: int = 4, *, seed: int = 0, device="cpu",
                 dtype=torch.float32):
        super().__init__()
        check.device("device", device)
        self.vocab_size = check.positive_int("vocab_size", vocab_size, minimum=2)
        self.d_emb = check.positive_int("d_emb", d_emb)
        self.n_layers = check.positive_int("n_layers", n_layers)
        self.n_heads = check.positive_int("n_heads", n_heads)
        self.context = check.positive_int("context", context)
        self.mlp_ratio = check.positive_int("mlp_ratio", mlp_ratio)
        check.budget("vocab_size, d_emb, n_layers, context, mlp_ratio", formula="4-byte parameters and Adam state",
                     nbytes=16.0 * d_emb * (2 * vocab_size + context + n_layers * (4 + 2 * mlp_ratio) * d_emb),
                     work=1e4 * n_layers)
        if d_emb % n_heads:
            raise ValueError(f"d_emb must be divisible by n_heads, got d_emb={d_emb}, n_heads={n_heads}")
        with torch.random.fork_rng(devices=[]):  # module constructors draw from the global RNG
            self.token_embedding = nn.Embedding(vocab_size, d_emb)
            self.position_embedding = nn.Embedding(context, d_emb)
            self.blocks = nn.ModuleList(_Block(d_emb, n_heads, mlp_ratio) for _ in range(n_layers))
            self.final_norm = nn.LayerNorm(d_emb)
            self.head = nn.Linear(d_emb, vocab_size)
        self._initialise(check.seed("seed", seed))
        self.to(device=device, dtype=dtype)

    def _initialise(self, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        residual_std = 0.02 / math.sqrt(2 * self.n_layers)
        for name, param in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(param)
            elif "norm" in name:
                nn.init.ones_(param)
            else:
                std = residual_std if name.endswith(("out.weight", "down.weight")) else 0.02
                with torch.no_grad():
                    param.copy_(torch.randn(param.shape, generator=generator) * std)

    def residual_stream(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        r"""The residual stream along the forward pass: :math:`h_0` (token plus position embeddings)
        and :math:`h_t` after each block :math:`t = 1, \dots, l`, each ``(B, T, d_emb)``.

        Parameters
        ----------
        tokens : torch.Tensor of int, shape ``(B, T)``
            Token indices in :math:`[0, \text{vocab\_size})`, :math:`1 \le T \le` ``context``.
        """
        tokens = self._check_tokens(tokens)
        positions = torch.arange(tokens.shape[-1], device=tokens.device)
        states = [self.token_embedding(tokens) + self.position_embedding(positions)]
        for block in self.blocks:
            states.append(block(states[-1]))
        return states

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """Last-layer activations: the final layer norm of the residual stream, ``(B, T, d_emb)``.

        Parameters
        ----------
        tokens : torch.Tensor of int, shape ``(B, T)``
            Token indices in :math:`[0, \\text{vocab\\_size})`, :math:`1 \\le T \\le` ``context``.
        """
        return self.final_norm(self.residual_stream(tokens)[-1])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits ``(B, T, vocab_size)``; the output at position t sees tokens ``<= t`` only.

        Parameters
        ----------
        tokens : torch.Tensor of int, shape ``(B, T)``
            Token indices in :math:`[0, \\text{vocab\\_size})`, :math:`1 \\le T \\le` ``context``.
        """
        return self.head(self.hidden(tokens))

    def _check_tokens(self, tokens, name: str = "tokens") -> torch.Tensor:
        """``tokens`` checked as a ``(batch, T)`` integer tensor the model accepts; errors say ``name``."""
        if not isinstance(tokens, torch.Tensor) or tokens.dtype not in (torch.int64, torch.int32):
            kind = type(tokens).__name__ if not isinstance(tokens, torch.Tensor) else f"a {tokens.dtype} tensor"
            raise TypeError(f"{name} must be an integer torch.Tensor, got {kind}")
        if tokens.ndim != 2 or tokens.shape[0] < 1 or not 1 <= tokens.shape[1] <= self.context:
            raise ValueError(f"{name} must have shape (batch, T) with batch >= 1 and 1 <= T <= "
                             f"context={self.context}, got {tuple(tokens.shape)}")
        if tokens.min() < 0 or tokens.max() >= self.vocab_size:
            raise ValueError(f"{name} must lie in [0, {self.vocab_size - 1}]")
        return tokens


class _Block(nn.Module):
    def __init__(self, d_emb: int, n_heads: int, mlp_ratio: int):
        super().__init__()
        self.n_heads = n_heads
        self.attn_norm = nn.LayerNorm(d_emb)
        self.qkv = nn.Linear(d_emb, 3 * d_emb)
        self.out = nn.Linear(d_emb, d_emb)
        self.mlp_norm = nn.LayerNorm(d_emb)
        self.up = nn.Linear(d_emb, mlp_ratio * d_emb)
        self.down = nn.Linear(mlp_ratio * d_emb, d_emb)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).split(width, dim=-1)
        heads = [t.view(batch, length, self.n_heads, -1).transpose(1, 2) for t in (q, k, v)]
        attended = F.scaled_dot_product_attention(*heads, is_causal=True)
        x = x + self.out(attended.transpose(1, 2).reshape(batch, length, width))
        return x + self.down(F.gelu(self.up(self.mlp_norm(x))))


def parameter_counts(model: CausalTransformer) -> dict[str, int]:
    r"""Parameters by part. ``"paper"`` = attention + feed-forward, the :math:`N` of [NBDH24]
    (:math:`l\,(12 d^2 + 9d)` with biases for ``mlp_ratio = 4``); embeddings, norms and the head are
    listed apart; ``"total"`` counts everything.

    Parameters
    ----------
    model : CausalTransformer
        The model whose parameters are counted.

    Returns
    -------
    dict of str to int
        ``attention``, ``feedforward``, ``embedding``, ``norm``, ``head``, ``paper`` and ``total``.
    """
    if not isinstance(model, CausalTransformer):
        raise TypeError(f"model must be a CausalTransformer, got {type(model).__name__}")
    parts = {"attention": 0, "feedforward": 0, "embedding": 0, "norm": 0, "head": 0}
    for name, param in model.named_parameters():
        if ".qkv." in name or ".out." in name:
            parts["attention"] += param.numel()
        elif ".up." in name or ".down." in name:
            parts["feedforward"] += param.numel()
        elif "embedding" in name:
            parts["embedding"] += param.numel()
        elif "norm" in name:
            parts["norm"] += param.numel()
        else:
            parts["head"] += param.numel()
    parts["paper"] = parts["attention"] + parts["feedforward"]
    parts["total"] = sum(p.numel() for p in model.parameters())
    return parts


def sample_windows(tokens, context: int, batch_size: int, generator: torch.Generator,
                   device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of random windows: inputs ``tokens[s:s+context]`` and targets shifted by one.

    Parameters
    ----------
    tokens : array of int, 1-D
        A token stream longer than ``context + 1``.
    context : int
        Window length, :math:`\\ge 1`.
    batch_size : int
        Number of windows, :math:`\\ge 1`.
    generator : torch.Generator
        Draws the start positions, uniform in :math:`[0, \\text{len} - \\text{context})`.
    device : str or torch.device
        Device of the returned tensors.

    Returns
    -------
    tuple of torch.Tensor
        ``(inputs, targets)``, each ``(batch_size, context)``.
    """
    check.device("device", device)
    check.budget("batch_size, context", nbytes=16.0 * check.positive_int("batch_size", batch_size)
                 * check.positive_int("context", context),
                 formula="int64 inputs and targets of batch_size x context")
    stream = _as_stream(tokens, context)
    starts = torch.randint(0, len(stream) - context, (batch_size,), generator=generator)
    return _windows(stream, starts, context, device)


def spread_subset(tokens, n_tokens: int, chunk: int) -> np.ndarray:
    """``n_tokens`` tokens made of chunks of length ``chunk`` taken at evenly spaced places of
    ``tokens`` and joined: a small training set that covers the whole corpus rather than its first
    pages (a prefix would measure a change of topic along with overfitting).

    Parameters
    ----------
    tokens : array of int, 1-D
        The token stream.
    n_tokens : int
        Number of tokens to keep, :math:`\\ge 1`; the whole stream is returned when it is not longer.
    chunk : int
        Length of each contiguous chunk, :math:`\\ge 1`.
    """
    tokens = check.int_array("tokens", tokens, minimum=0)
    n_tokens = check.positive_int("n_tokens", n_tokens)
    chunk = check.positive_int("chunk", chunk)
    if n_tokens >= len(tokens):
        return tokens
    n_chunks = -(-n_tokens // chunk)
    starts = np.linspace(0, len(tokens) - chunk, n_chunks).astype(np.int64)
    return np.concatenate([tokens[s:s + chunk] for s in starts])[:n_tokens]


def _windows(stream: torch.Tensor, starts: torch.Tensor, context: int, device):
    index = starts[:, None] + torch.arange(context + 1)[None, :]
    chunk = stream[index].to(device)
    return chunk[:, :-1], chunk[:, 1:]


def _as_stream(tokens, context: int, name: str = "tokens") -> torch.Tensor:
    """``tokens`` as a 1-D int64 tensor longer than ``context + 1``; errors name the caller's ``name``."""
    context = check.positive_int("context", context)
    stream = torch.as_tensor(check.int_array(name, tokens, minimum=0))
    if stream.ndim != 1 or len(stream) < context + 2:
        raise ValueError(f"{name} must be a 1-D stream longer than context + 1 = {context + 1}, "
                         f"got shape {tuple(stream.shape)}")
    return stream


def _checked_model(model) -> None:
    if not isinstance(model, CausalTransformer):
        raise TypeError(f"model must be a CausalTransformer, got {type(model).__name__}")


def _checked_run(run) -> None:
    if not isinstance(run, TrainingRun):
        raise TypeError(f"run must be a TrainingRun, got {type(run).__name__}")
    if not run.val_loss:
        raise ValueError("run has no evaluations")


@torch.no_grad()
def evaluate_loss(model: CausalTransformer, tokens, *, n_windows: int = 64, min_position: int = 0,
                  batch_size: int = 64) -> float:
    r"""Mean next-token cross-entropy (nats) on ``n_windows`` evenly spaced windows of ``tokens``.

    Only predictions at positions :math:`t \ge` ``min_position`` count, so each has at least that many
    tokens of context (for the grammar, enough context to see an example boundary makes the best
    achievable loss equal to the stream's entropy rate). Deterministic: no randomness.

    Parameters
    ----------
    model : CausalTransformer
        The model, evaluated in eval mode (its mode is restored after).
    tokens : array of int, 1-D
        A token stream longer than the model's ``context + 1``.
    n_windows : int
        Number of windows, :math:`\ge 1`.
    min_position : int
        First position counted, in :math:`[0, \text{context})`.
    batch_size : int
        Windows per forward pass, :math:`\ge 1`.
    """
    _checked_model(model)
    n_windows = check.positive_int("n_windows", n_windows)
    min_position = check.positive_int("min_position", min_position, minimum=0)
    if min_position >= model.context:
        raise ValueError(f"min_position must be < context={model.context}, got {min_position}")
    stream = _as_stream(tokens, model.context)
    batch_size = check.positive_int("batch_size", batch_size)
    check.budget("n_windows", nbytes=8.0 * n_windows * (2 + model.context), formula="int64 window starts and "
                 "the windows of one batch", work=2.0 * n_windows * model.context
                 * sum(p.numel() for p in model.parameters()) + check.STEP_WORK * n_windows / batch_size)
    starts = torch.linspace(0, len(stream) - model.context - 1, n_windows).long()
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = 0.0
    for chunk in starts.split(batch_size):
        inputs, targets = _windows(stream, chunk, model.context, device)
        logits = model(inputs)[:, min_position:]
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                 targets[:, min_position:].reshape(-1), reduction="sum").item()
    model.train(was_training)
    return total / (n_windows * (model.context - min_position))


@dataclass
class TrainingRun:
    """Loss curves of a training run: at each evaluation ``step``, the loss on fixed training and
    validation windows (``train_loss``, ``val_loss``), and the running mean of minibatch losses."""

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    batch_loss: list[float] = field(default_factory=list)

    @property
    def best(self) -> int:
        """Index of the evaluation with the smallest finite validation loss (the first on ties; 0 when
        no loss is finite)."""
        losses = np.asarray(self.val_loss, dtype=np.float64)
        return int(np.argmin(np.where(np.isfinite(losses), losses, np.inf)))

    @property
    def min_val_loss(self) -> float:
        """The smallest finite validation loss."""
        return self.val_loss[self.best]

    @property
    def diverged(self) -> bool:
        """Whether the last evaluation's training or validation loss is not finite."""
        return bool(self.val_loss) and not (math.isfinite(self.train_loss[-1]) and math.isfinite(self.val_loss[-1]))


def train_language_model(model: CausalTransformer, corpus: Corpus, *, steps: int = 1000,
                         batch_size: int = 32, lr: float = 3e-3, weight_decay: float = 0.0,
                         train_tokens: int | None = None, eval_every: int = 100, eval_windows: int = 64,
                         min_position: int = 0, train_min_position: int | None = None,
                         patience: int | None = None, seed: int = 0,
                         checkpoint: str | os.PathLike | None = None, progress: bool = True,
                         on_evaluate: Callable[[int, CausalTransformer], None] | None = None) -> TrainingRun:
    """Train ``model`` by AdamW on random windows of ``corpus.train`` and return its loss curves.

    A run whose training or validation loss turns non-finite (it diverged: its parameters stay NaN or
    inf from then on) stops at that evaluation, with ``TrainingRun.diverged`` true.

    Parameters
    ----------
    model : CausalTransformer
        The model, trained in place.
    corpus : Corpus
        Its ``train`` stream is sampled, its ``validation`` stream evaluated.
    steps : int
        Number of optimiser steps; with ``patience``, the most steps.
    batch_size : int
        Windows per step, :math:`\\ge 1`.
    lr : float
        AdamW's learning rate, in :math:`(0, 10^6]`.
    weight_decay : float
        AdamW's weight decay, in :math:`[0, 10^6]`.
    train_tokens : int, optional
        Train on ``train_tokens`` tokens only (the data size D of the N-D experiment), chosen by
        :func:`spread_subset` in chunks of ``16 * context`` tokens.
    eval_every : int
        Steps between evaluations, :math:`\\ge 1`.
    eval_windows : int
        Windows per evaluation, :math:`\\ge 1`.
    min_position : int
        First position counted in evaluations, in ``[0, context)``.

        Every ``eval_every`` steps (and at the end) evaluate :func:`evaluate_loss` on ``eval_windows``
        windows of the training stream and of ``corpus.validation``, counting predictions at
        positions ``>= min_position``.
    train_min_position : int, optional
        The first position counted on the training stream (default ``min_position``): 0 gives the
        training loss over all positions, the convention of [NBDH24].
    patience : int, optional
        Early stopping: stop at the first evaluation at which the minimum validation loss was reached
        ``patience`` or more steps earlier (``steps`` is then the budget's cap). ``patience = 1000``
        observes the whole window of :func:`paper_gap`.
    seed : int
        Seeds the window sampler (the model's initialisation has its own seed).
    checkpoint : path, optional
        A file holding the model, the optimiser, the sampler state and the curves, rewritten
        atomically at every evaluation; when it exists, training resumes from it.
    progress : bool
        Show a tqdm progress bar.
    on_evaluate : callable, optional
        Called as ``on_evaluate(step, model)`` after each evaluation (e.g. to measure energies).
    """
    if not isinstance(model, CausalTransformer):
        raise TypeError(f"model must be a CausalTransformer, got {type(model).__name__}")
    steps = check.positive_int("steps", steps)
    batch_size = check.positive_int("batch_size", batch_size)
    lr = check.real("lr", lr, low=0.0, high=1e6, low_open=True)
    weight_decay = check.real("weight_decay", weight_decay, low=0.0, high=1e6)
    eval_every = check.positive_int("eval_every", eval_every)
    eval_windows = check.positive_int("eval_windows", eval_windows)
    min_position = check.positive_int("min_position", min_position, minimum=0, maximum=model.context - 1)
    train_min_position = min_position if train_min_position is None else check.positive_int(
        "train_min_position", train_min_position, minimum=0, maximum=model.context - 1)
    if patience is not None:
        patience = check.positive_int("patience", patience)
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a path or None, got {checkpoint!r}")
    if on_evaluate is not None and not callable(on_evaluate):
        raise TypeError(f"on_evaluate must be callable or None, got {on_evaluate!r}")
    n_params = sum(p.numel() for p in model.parameters())
    check.budget("steps, batch_size, eval_windows", work=6.0 * n_params * model.context
                 * (steps * batch_size + 2 * (steps // eval_every + 1) * eval_windows),
                 formula="6 x parameters x context x (training plus evaluation windows)")
    if not isinstance(corpus, Corpus):
        raise TypeError(f"corpus must be a Corpus, got {type(corpus).__name__}")
    if corpus.vocab_size != model.vocab_size:
        raise ValueError(f"corpus has {corpus.vocab_size} tokens but the model's vocab_size is "
                         f"{model.vocab_size}")
    train = corpus.train
    if train_tokens is not None:
        train_tokens = check.positive_int("train_tokens", train_tokens, minimum=model.context + 2)
        train = spread_subset(train, train_tokens, 16 * model.context)
    stream = _as_stream(train, model.context)
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(check.seed("seed", seed))
    run, start = TrainingRun(), 0
    settings = {"steps": steps, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                "train_tokens": len(stream), "seed": seed, "min_position": min_position,
                "train_min_position": train_min_position, "patience": patience}
    if checkpoint is not None and Path(checkpoint).exists():
        run, start = _resume(checkpoint, model, optimizer, generator, settings)

    def evaluate(step: int) -> None:
        run.steps.append(step)
        run.train_loss.append(evaluate_loss(model, stream, n_windows=eval_windows,
                                            min_position=train_min_position))
        run.val_loss.append(evaluate_loss(model, corpus.validation, n_windows=eval_windows,
                                          min_position=min_position))
        if on_evaluate is not None:
            on_evaluate(step, model)

    if start == 0 and not run.steps:
        evaluate(0)
    if _patience_spent(run, patience) or run.diverged:
        return run
    model.train()
    running = []
    for step in tqdm(range(start + 1, steps + 1), initial=start, total=steps, disable=not progress,
                     desc="training", unit="step"):
        inputs, targets = sample_windows(stream, model.context, batch_size, generator, device)
        logits = model(inputs)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running.append(loss.item())
        if step % eval_every == 0 or step == steps:
            run.batch_loss.append(float(np.mean(running)))
            running = []
            evaluate(step)
            if checkpoint is not None:
                _save(checkpoint, model, optimizer, generator, settings, run, step)
            if _patience_spent(run, patience) or run.diverged:
                break
    return run


def _patience_spent(run: TrainingRun, patience: int | None) -> bool:
    """Whether the best validation loss is ``patience`` or more steps old at the last evaluation."""
    if patience is None or not run.val_loss:
        return False
    return run.steps[-1] - run.steps[run.best] >= patience


def _save(path, model, optimizer, generator, settings, run, step) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "generator": generator.get_state(), "settings": settings, "run": asdict(run), "step": step}
    atomic_write(path, lambda handle: torch.save(state, handle), binary=True)


def _resume(path, model, optimizer, generator, settings) -> tuple[TrainingRun, int]:
    """Restore a checkpoint written by :func:`_save`. It is loaded with ``weights_only=True`` (tensors
    and plain containers only: a crafted file cannot run code); a damaged one is reported by name."""
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
        valid = isinstance(state, dict) and {"model", "optimizer", "generator", "settings", "run",
                                             "step"} <= set(state)
    except Exception as error:  # truncated, empty, zero-filled, or holding objects other than tensors
        raise ValueError(f"checkpoint {path} is damaged or not a checkpoint ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''}); delete it to restart "
                         f"training from step 0") from None
    if not valid:
        raise ValueError(f"checkpoint {path} is damaged or not a checkpoint (missing fields); delete it to "
                         f"restart training from step 0")
    if state["settings"] != settings:
        raise ValueError(f"checkpoint {path} was written with settings {state['settings']}, "
                         f"not {settings}; remove it or pass another checkpoint path")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    return TrainingRun(**state["run"]), state["step"]


@torch.no_grad()
def last_layer_activations(model: CausalTransformer, tokens, n_sequences: int, seed: int = 0) -> np.ndarray:
    r"""Last-layer activations of ``n_sequences`` random windows, each flattened to one point of
    :math:`\mathbb{R}^n`, :math:`n = T\,d_{emb}` (the embedded-sequence dimension of the theory).
    Returns a float64 array ``(n_sequences, context * d_emb)``.

    Parameters
    ----------
    model : CausalTransformer
        The model (evaluated in eval mode).
    tokens : array of int, 1-D
        A token stream longer than the model's ``context + 1``.
    n_sequences : int
        Number of random windows, :math:`\ge 1`.
    seed : int
        Seed of the window starts (:func:`sample_windows`).
    """
    _checked_model(model)
    n_sequences = check.positive_int("n_sequences", n_sequences)
    check.budget("n_sequences", nbytes=8.0 * n_sequences * model.context * (2 + 2 * model.d_emb),
                 formula="int64 windows and float64 activations of n_sequences x context x d_emb")
    generator = torch.Generator().manual_seed(check.seed("seed", seed))
    device = next(model.parameters()).device
    inputs, _ = sample_windows(tokens, model.context, n_sequences, generator, device)
    was_training = model.training
    model.eval()
    hidden = torch.cat([model.hidden(chunk) for chunk in inputs.split(256)])
    model.train(was_training)
    return hidden.reshape(n_sequences, -1).double().cpu().numpy()


def nearest_neighbour_distances(points) -> np.ndarray:
    """Euclidean distance from each point (row) to its nearest other point, in float64.

    Parameters
    ----------
    points : array, shape ``(m, n)``
        The points, :math:`m \\ge 2`.

    Returns
    -------
    numpy.ndarray, shape ``(m,)``
        Distance of each point to its nearest other point.
    """
    x = torch.as_tensor(check.real_array("points", points))
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"points must have shape (m, n) with m >= 2, got {tuple(x.shape)}")
    distances = torch.cdist(x, x)
    distances.fill_diagonal_(math.inf)
    return distances.min(dim=1).values.numpy()


def mean_squared_gap(run: TrainingRun, last_fraction: float = 0.5) -> float:
    r"""Mean of :math:`(L_{train}(t) - \min_s L_{val}(s))^2` over the last ``last_fraction`` of the
    evaluations: how far the training loss stays from the best validation loss (the book's N-D rule;
    :func:`paper_gap` is the paper's).

    Parameters
    ----------
    run : TrainingRun
        Loss curves.
    last_fraction : float in (0, 1]
        Fraction of the evaluations, counted from the end, that the mean runs over.
    """
    _checked_run(run)
    fraction = check.real("last_fraction", last_fraction, low=0.0, high=1.0, low_open=True)
    tail = np.asarray(run.train_loss[-max(1, round(fraction * len(run.train_loss))):])
    return float(np.mean((tail - run.min_val_loss) ** 2))


def paper_gap(run: TrainingRun, window: int = 1000) -> float:
    r"""The gap of [NBDH24]'s rule: the mean of :math:`(L_{train}(s) - \min_t L_{val}(t))^2` over the
    evaluations :math:`s` with :math:`t^* < s \le t^* + \text{window}`, :math:`t^*` the step of the
    minimum validation loss (the ``window`` iterations after the minimum).

    When no evaluation follows the minimum (it fell on the last one, so training was capped before
    overfitting), the last evaluations within ``window`` steps of the end are used instead.

    Parameters
    ----------
    run : TrainingRun
        Loss curves; train with ``patience >= window`` so that the window is observed in full.
    window : int
        Length of the window in optimiser steps (1000 in the paper).
    """
    _checked_run(run)
    window = check.positive_int("window", window)
    steps, train = np.asarray(run.steps), np.asarray(run.train_loss)
    best = run.best
    inside = (steps > steps[best]) & (steps <= steps[best] + window)
    if not inside.any():
        inside = steps >= steps[-1] - window
    return float(np.mean((train[inside] - run.min_val_loss) ** 2))


def balanced_data_size(data_sizes, gaps, sigma2: float = 0.04, *, interpolate: bool = False) -> float:
    r"""The paper's :math:`D^*`: the smallest data size whose mean squared gap (see
    :func:`mean_squared_gap`) is at most :math:`\sigma^2`; ``nan`` when none is.

    With ``interpolate=True``, :math:`D^*` is where the gap crosses :math:`\sigma^2` on the straight
    line through the last size above and the first size below in :math:`(\log D, \log \text{gap})`,
    which resolves :math:`D^*` more finely than the grid (the first size is returned when it is
    already below).

    Parameters
    ----------
    data_sizes : array of int
        The data sizes :math:`D` of the grid (any order).
    gaps : array
        Mean squared gap at each data size, finite and :math:`> 0`, same shape as ``data_sizes``.
    sigma2 : float
        The threshold :math:`\sigma^2 > 0`.
    interpolate : bool
        Interpolate the crossing on log-log axes instead of returning a grid point.
    """
    sizes = check.int_array("data_sizes", data_sizes)
    gaps = check.real_array("gaps", gaps)
    if gaps.shape != sizes.shape or not np.all(np.isfinite(gaps)) or np.any(gaps <= 0):
        raise ValueError(f"gaps must be finite and > 0 with the shape of data_sizes {sizes.shape}, "
                         f"got {gaps}")
    sigma2 = check.real("sigma2", sigma2, low=0.0, low_open=True)
    order = np.argsort(sizes)
    sizes, gaps = sizes[order], gaps[order]
    below = np.flatnonzero(gaps <= sigma2)
    if below.size == 0:
        return float("nan")
    k = below[0]
    if not interpolate or k == 0:
        return float(sizes[k])
    x0, x1 = np.log(sizes[k - 1:k + 1])
    y0, y1 = np.log(gaps[k - 1:k + 1])
    return float(np.exp(x0 + (np.log(sigma2) - y0) * (x1 - x0) / (y1 - y0)))


def balanced_sizes(table, *, sigma2: float = 0.04, gap: str = "gap_paper", interpolate: bool = False):
    r""":math:`D^*` for every model of an :func:`nd_balance` table, by :func:`balanced_data_size`.

    Parameters
    ----------
    table : pandas.DataFrame
        Rows of :func:`nd_balance` with columns ``d_emb``, ``seed``, ``N``, ``D`` and ``gap``.
    sigma2 : float
        The threshold :math:`\sigma^2` (0.04 in the paper).
    gap : {"gap_paper", "gap_book"}
        Which gap: :func:`paper_gap` (the paper's rule) or :func:`mean_squared_gap` (the book's).
    interpolate : bool
        Interpolate the crossing between grid points on log-log axes.

    Returns
    -------
    pandas.DataFrame
        One row per ``(d_emb, seed)``: ``d_emb``, ``seed``, ``N``, ``D_star`` (``nan`` when no data
        size of the grid is balanced), ``sizes`` (how many data sizes the rule used) and ``diverged``
        (how many were left out because their run diverged, :func:`flag_diverged`).
    """
    import pandas as pd

    check.choice("gap", gap, {"gap_paper", "gap_book"})
    table = check.table("table", table, ("d_emb", "seed", "N", "D", gap))
    table = flag_diverged(table)
    rows = []
    for (d, seed), group in table.groupby(["d_emb", "seed"], sort=True):
        kept = group[~group.diverged]
        rows.append({"d_emb": int(d), "seed": int(seed), "N": int(group.N.iloc[0]),
                     "D_star": balanced_data_size(kept.D.to_numpy(), kept[gap].to_numpy(), sigma2,
                                                  interpolate=interpolate) if len(kept) else float("nan"),
                     "sizes": len(kept), "diverged": int(group.diverged.sum())})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class BalanceFit:
    r"""The exponent :math:`s` of :math:`D^* \propto N^{s}` on an N-D grid (:func:`balance_exponent`).

    Attributes
    ----------
    D_star : pandas.DataFrame
        :math:`D^*` of every model: index ``seed``, columns ``d_emb`` (``nan`` where no size of the
        grid is balanced, or the seed did not run at that width).
    widths : list of int
        The widths at which every seed run found :math:`D^*` inside the grid: the fit's points.
    beyond : list of int
        The other widths (:math:`D^*` beyond the grid for at least one seed).
    seeds : list of int
        The seeds that found :math:`D^*` at every width of ``widths``: the fit's trials.
    N : numpy.ndarray
        :math:`N` of each width of ``widths``.
    over_seeds : PowerLawFit
        Fit to the seed-mean :math:`D^*`, its interval a bootstrap over ``seeds``.
    over_widths : PowerLawFit
        The same slope as an ordinary least-squares fit through the seed means, its interval from
        the scatter of the widths about the line.
    ratio : numpy.ndarray
        :math:`N / D^{*2}` at each width of ``widths``, the mean over ``seeds``.
    unbracketed : int
        Models (a width of ``widths`` and a seed of ``seeds``) whose smallest data size is already
        balanced, so that :math:`D^*` is an upper bound rather than a crossing.
    capped_at_crossing : int
        Models whose run at :math:`D^*` on the grid, or at the largest size below it, stopped at the
        step cap (``converged == 0``) rather than by the patience rule.
    """

    D_star: object
    widths: list
    beyond: list
    seeds: list
    N: np.ndarray
    over_seeds: PowerLawFit
    over_widths: PowerLawFit
    ratio: np.ndarray
    unbracketed: int
    capped_at_crossing: int


def balance_exponent(table, *, gap: str = "gap_paper", sigma2: float = 0.04, interpolate: bool = True,
                     level: float = 0.95, seed: int = 0) -> BalanceFit:
    r"""Fit :math:`D^* \propto N^{s}` over the widths of an :func:`nd_balance` table.

    :math:`D^*` of each model (width and seed) is :func:`balanced_sizes`'s; the fit runs over the
    widths at which every seed found it, through :func:`assocmem.fitting.fit_power_law` on
    :math:`(N, D^*)`: once with a bootstrap over seeds (``over_seeds``), once by least squares on the
    seed means (``over_widths``). :math:`N = O(D^2)` is :math:`s = 1/2`, i.e. :math:`N/D^{*2}` constant.

    Parameters
    ----------
    table : pandas.DataFrame
        Rows of :func:`nd_balance` with columns ``d_emb``, ``seed``, ``N``, ``D``, ``converged`` and
        ``gap``.
    gap : {"gap_paper", "gap_book"}
        The rule: :func:`paper_gap` (the paper's) or :func:`mean_squared_gap` (the book's).
    sigma2 : float
        The threshold :math:`\sigma^2` (0.04 in the paper).
    interpolate : bool
        Interpolate :math:`D^*` between grid points on log-log axes (:func:`balanced_data_size`).
    level : float
        Confidence level of both intervals, in (0, 1).
    seed : int
        Seed of the bootstrap over seeds.

    Returns
    -------
    BalanceFit
    """
    table = check.table("table", table, ("converged",))
    stars = balanced_sizes(table, sigma2=sigma2, gap=gap, interpolate=interpolate)
    D_star = stars.pivot(index="seed", columns="d_emb", values="D_star")
    widths = [int(d) for d, rows in stars.groupby("d_emb") if rows.D_star.notna().all()]
    seeds = [int(s) for s in D_star.index if D_star.loc[s, widths].notna().all()]
    if len(widths) < 2 or not seeds:
        raise ValueError(f"table must give D* for every seed at two widths at least; it does at {widths}")
    N = stars.groupby("d_emb").N.first()[widths].to_numpy(dtype=np.float64)
    found = D_star.loc[seeds, widths].to_numpy(dtype=np.float64)
    grid = balanced_sizes(table, sigma2=sigma2, gap=gap).set_index(["d_emb", "seed"]).D_star
    rows = flag_diverged(table)
    rows = rows[~rows.diverged & rows.d_emb.isin(widths) & rows.seed.isin(seeds)]
    unbracketed = capped = 0
    for (d, s), model in rows.groupby(["d_emb", "seed"]):
        model = model.sort_values("D")
        unbracketed += bool(model[gap].iloc[0] <= sigma2)
        star = grid[(d, s)]
        crossing = model[(model.D == star) | (model.D == model.D[model.D < star].max())]
        capped += bool((crossing.converged == 0).any())
    return BalanceFit(D_star=D_star, widths=widths, beyond=[int(d) for d in D_star.columns if d not in widths],
                      seeds=seeds, N=N, over_seeds=fit_power_law(N, found, level=level, seed=seed),
                      over_widths=fit_power_law(N, found.mean(axis=0), level=level),
                      ratio=(N / found**2).mean(axis=0), unbracketed=unbracketed, capped_at_crossing=capped)


# The losses of each experiment's rows; a row any of whose losses is not finite comes from a diverged run.
LOSS_COLUMNS = {"nd_balance": ("min_val_loss", "final_train_loss", "gap_paper", "gap_book"),
                "loss_floor": ("train_loss_all", "val_loss_filled")}


def flag_diverged(table):
    r"""``table`` (rows of :func:`nd_balance` or :func:`loss_floor`) with a boolean column ``diverged``:
    true where one of the row's losses (:data:`LOSS_COLUMNS`) is NaN or infinite, i.e. training had
    diverged by then (:func:`train_language_model` stops a run at the first non-finite loss).

    The flag is a function of the losses, so it is derived here, when a table is loaded, rather than
    stored by the experiments: the sweep cache keys an entry by the experiment's name, version and
    configuration, and a stored column would need a new version, invalidating every finished run.
    The sweep runner applies it to these experiments' tables (their registered ``derive``), so
    :func:`assocmem.sweep.run_sweep` and the CLI's ``--out`` files carry the flag; load committed tables
    through it too (:func:`balanced_sizes` does, and leaves diverged rows out).

    Parameters
    ----------
    table : pandas.DataFrame
        Rows holding the loss columns of at least one of the experiments in :data:`LOSS_COLUMNS`.

    Returns
    -------
    pandas.DataFrame
        A copy of ``table`` with ``diverged`` (bool) added, or recomputed if present.
    """
    import pandas as pd

    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas.DataFrame, got {type(table).__name__}")
    known = [c for cols in LOSS_COLUMNS.values() for c in cols]
    columns = [c for c in known if c in table.columns]
    if not columns:
        raise ValueError(f"table holds none of the loss columns {known}")
    try:
        losses = table[columns].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"table's loss columns {columns} must be numbers") from None
    return table.assign(diverged=~np.isfinite(losses).all(axis=1))


def spread_windows(tokens, context: int, n_windows: int, device="cpu") -> torch.Tensor:
    """``n_windows`` windows of ``context`` tokens at evenly spaced starts of ``tokens``, ``(n, context)``
    (deterministic: the windows :func:`evaluate_loss` scores, without their targets).

    Parameters
    ----------
    tokens : array of int, 1-D
        A token stream longer than ``context + 1``.
    context : int
        Window length, :math:`\\ge 1`.
    n_windows : int
        Number of windows, :math:`\\ge 1`.
    device : str or torch.device
        Device of the returned tensor.
    """
    stream = _as_stream(tokens, context)
    n_windows = check.positive_int("n_windows", n_windows)
    check.device("device", device)
    check.budget("n_windows", nbytes=16.0 * n_windows * context, formula="int64 windows of n_windows x context")
    starts = torch.linspace(0, len(stream) - context - 1, n_windows).long()
    return _windows(stream, starts, context, device)[0]


@torch.no_grad()
def normalised_states(model: CausalTransformer, windows: torch.Tensor) -> list[torch.Tensor]:
    r"""The residual stream :math:`h_0, \dots, h_l` of ``windows`` (:meth:`CausalTransformer.residual_stream`),
    each token's vector layer-normalised without gain (mean 0, variance 1 over its ``d_emb``
    coordinates, in float64) and each window flattened to one point of :math:`\mathbb{R}^n`, :math:`n = T d_{emb}`.

    The normalisation fixes the scale the energy :math:`e^{-\lVert x - \rho\rVert^2}` and the radius
    :math:`\sqrt{n/2\pi e}` assume (unit-variance coordinates, :math:`\lVert x\rVert^2 = n`), whatever
    the norm the residual stream has grown to. Returns float64 tensors ``(len(windows), n)``.

    Parameters
    ----------
    model : CausalTransformer
        The model (evaluated in eval mode; its mode is restored after).
    windows : torch.Tensor of int, shape ``(B, T)``
        Token windows, e.g. from :func:`spread_windows`.
    """
    _checked_model(model)
    model._check_tokens(windows, "windows")
    was_training = model.training
    model.eval()
    states = model.residual_stream(windows)
    model.train(was_training)
    # float64 and a negligible eps: at initialisation the stream's variance (about 4e-4) is not
    # large against layer norm's default eps of 1e-5
    return [F.layer_norm(h.double(), (h.shape[-1],), eps=1e-12).reshape(len(windows), -1) for h in states]


@torch.no_grad()
def energy_profile(model: CausalTransformer, pattern_tokens, probe_tokens, *, n_patterns: int = 256,
                   n_points: int = 64) -> dict:
    r"""The energies of [NBDH24] inside a trained transformer, layer by layer along the forward pass.

    Layer :math:`t` stores as its patterns :math:`\rho^{(t)}_i` the states after block :math:`t`
    (:func:`normalised_states`) of ``n_patterns`` windows of ``pattern_tokens`` (the training data);
    its energy is :math:`E_t(x) = -\log\sum_i e^{-\lVert x - \rho^{(t)}_i\rVert^2}`
    (:func:`assocmem.hopfield.layer_energy`). A probe window (``n_points`` of ``probe_tokens``, the
    held-out data) enters block :math:`t` as :math:`x_{t-1}` and leaves as :math:`x_t`; the block
    lowers its energy when :math:`E_t(x_t) < E_t(x_{t-1})`. The global energy is
    :math:`E_{global} = -\mathrm{LSE}(-E_1(x_1), \dots, -E_l(x_l))` (:func:`assocmem.hopfield.global_energy`).
    With balls of radius :math:`r_t` = half the smallest distance between two patterns (disjoint, so
    the paper's :math:`Z` is exact), :math:`Z_t = n_p\,\pi^{n/2} P(n/2, r_t^2)`
    (:func:`assocmem.theory.volume.log_ball_gaussian_integral`).

    Parameters
    ----------
    model : CausalTransformer
        The model, evaluated in eval mode.
    pattern_tokens, probe_tokens : 1-D integer arrays
        Token streams the patterns and the probes are windows of (evenly spaced, deterministic).
    n_patterns, n_points : int
        Number of pattern windows (:math:`n_p`) and of probe windows.

    Returns
    -------
    dict
        ``energy_in``, ``energy_out`` (mean over probes of :math:`E_t(x_{t-1})` and :math:`E_t(x_t)`),
        ``lowered`` (fraction of probes with :math:`E_t(x_t) < E_t(x_{t-1})`), ``log_Z``,
        ``pattern_radius`` (:math:`r_t`): float64 arrays of length :math:`l`; ``global_energy`` (mean
        over probes) and ``n`` (the dimension :math:`T d_{emb}`). Every energy is ``nan`` when the
        model's states are not finite (a diverged model, :func:`flag_diverged`).
    """
    _checked_model(model)
    pattern_tokens = _as_stream(pattern_tokens, model.context, "pattern_tokens")
    probe_tokens = _as_stream(probe_tokens, model.context, "probe_tokens")
    n_patterns = check.positive_int("n_patterns", n_patterns, minimum=2)
    n_points = check.positive_int("n_points", n_points)
    n = model.context * model.d_emb
    check.budget("n_patterns, n_points", nbytes=8.0 * ((n_patterns + n_points) * n * (model.n_layers + 1)
                                                       + n_patterns * (n_patterns + n_points)),
                 formula="float64 states of every layer and the pattern distances")
    device = next(model.parameters()).device
    patterns = normalised_states(model, spread_windows(pattern_tokens, model.context, n_patterns, device))
    points = normalised_states(model, spread_windows(probe_tokens, model.context, n_points, device))
    if not all(bool(torch.isfinite(h).all()) for h in patterns + points):  # a diverged model
        empty = {key: np.full(model.n_layers, np.nan) for key in
                 ("energy_in", "energy_out", "lowered", "log_Z", "pattern_radius")}
        return {**empty, "global_energy": float("nan"), "n": n}
    energy_in, energy_out, radii = [], [], []
    for t in range(1, model.n_layers + 1):
        energy_in.append(layer_energy(points[t - 1], patterns[t]))
        energy_out.append(layer_energy(points[t], patterns[t]))
        radii.append(0.5 * float(nearest_neighbour_distances(patterns[t].cpu().numpy()).min()))
    e_in, e_out = torch.stack(energy_in), torch.stack(energy_out)
    radii = np.asarray(radii)
    return {"energy_in": e_in.mean(1).cpu().numpy(), "energy_out": e_out.mean(1).cpu().numpy(),
            "lowered": (e_out < e_in).double().mean(1).cpu().numpy(),
            "log_Z": np.log(n_patterns) + log_ball_gaussian_integral(n, np.maximum(radii, 1e-300)),
            "pattern_radius": radii, "global_energy": float(global_energy(e_out, dim=0).mean()), "n": n}


@experiment("nd_balance", version=3, derive=flag_diverged)
def nd_balance(corpus: str = "english", d_emb: int = 32, n_layers: int = 2, n_heads: int = 4,
               context: int = 16, train_tokens: int = 8192, steps: int = 6000, patience: int = 1000,
               window: int = 1000, batch_size: int = 16, lr: float = 2e-3, eval_every: int = 50,
               eval_windows: int = 64, seed: int = 0, device: str = "cpu") -> dict:
    """One point of the N-D balance: a model of width ``d_emb`` trained to convergence on
    ``train_tokens`` tokens of ``corpus``.

    Parameters
    ----------
    corpus : str
        A name of :data:`assocmem.corpora.CORPORA`; the training set is :func:`spread_subset` of its
        training stream, the validation set its whole validation stream.
    d_emb, n_layers, n_heads, context : int
        The model (:class:`CausalTransformer`); ``seed`` seeds its initialisation and the sampler.
    train_tokens : int
        The data size D.
    steps, patience : int
        Early stopping (:func:`train_language_model`): stop once the best validation loss is
        ``patience`` steps old, or at ``steps``.
    window : int
        The window of :func:`paper_gap` (1000 iterations in the paper).
    batch_size, lr, eval_every, eval_windows : int, float, int, int
        Training and evaluation settings; losses count every position (the paper's convention).
    seed : int
        Seed of the initialisation and of the window sampler.
    device : str
        Torch device.

    Returns
    -------
    dict
        ``N`` (attention + feed-forward parameters), ``D`` (training tokens), ``steps_run``,
        ``step_min`` (step of the minimum validation loss), ``min_val_loss``, ``final_train_loss``,
        ``gap_paper`` (:func:`paper_gap`), ``gap_book`` (:func:`mean_squared_gap`), ``converged``
        (1 when early stopping ended the run, 0 when the cap or a divergence did) and ``seconds``
        (wall clock). A diverged run has non-finite losses; :func:`flag_diverged` adds the ``diverged``
        column to a loaded table (it is derived, not stored, so cached entries stay valid).
    """
    started = time.perf_counter()
    patience = check.positive_int("patience", patience)
    data = named_corpus(corpus)
    model = CausalTransformer(data.vocab_size, d_emb, n_layers, n_heads, context, seed=seed, device=device)
    run = train_language_model(model, data, steps=steps, batch_size=batch_size, lr=lr,
                               train_tokens=train_tokens, eval_every=eval_every, eval_windows=eval_windows,
                               patience=patience, seed=seed, progress=False)
    best = run.best
    return {"N": parameter_counts(model)["paper"],
            "D": len(spread_subset(data.train, train_tokens, 16 * context)),
            "steps_run": run.steps[-1], "step_min": run.steps[best], "min_val_loss": run.min_val_loss,
            "final_train_loss": run.train_loss[-1], "gap_paper": paper_gap(run, window),
            "gap_book": mean_squared_gap(run), "converged": int(_patience_spent(run, patience)),
            "seconds": time.perf_counter() - started}


@experiment("loss_floor", version=3, derive=flag_diverged)
def loss_floor(corpus: str = "grammar", d_emb: int = 64, n_layers: int = 2, n_heads: int = 4,
               context: int = 32, steps: int = 8000, patience: int = 1500, batch_size: int = 16,
               lr: float = 3e-3, eval_every: int = 100, eval_windows: int = 128, min_position: int = 24,
               energy_patterns: int = 256, energy_points: int = 64, seed: int = 0,
               device: str = "cpu") -> list[dict]:
    """Train on ``corpus`` to its plateau, recording the loss in both conventions and the energies
    inside the model at every evaluation.

    Parameters
    ----------
    corpus : str
        A name of :data:`assocmem.corpora.CORPORA`.
    d_emb, n_layers, n_heads, context : int
        The model (:class:`CausalTransformer`).
    steps, patience : int
        Early stopping on the validation loss (:func:`train_language_model`), capped at ``steps``.
    batch_size, lr, eval_every, eval_windows : int, float, int, int
        Training and evaluation settings.
    min_position : int
        The validation loss counts predictions with at least this many tokens of context.
    energy_patterns, energy_points : int
        Sizes of :func:`energy_profile`'s pattern set (training windows) and probe set (validation).
    seed : int
        Seed of the initialisation and of the window sampler.
    device : str
        Torch device.

    Returns
    -------
    list of dict
        One row per evaluation and layer: ``step``, ``layer`` (1 to ``n_layers``),
        ``train_loss_all`` (training loss over every position, the paper's convention),
        ``val_loss_filled`` (validation loss at positions >= ``min_position``, the book's),
        ``entropy_rate`` (exact, ``nan`` if unknown), and the layer's :func:`energy_profile`
        entries ``energy_in``, ``energy_out``, ``lowered``, ``log_Z``, ``pattern_radius``, with the
        step's ``global_energy`` and the dimension ``n``. A diverged run ends at its first non-finite
        loss; :func:`flag_diverged` adds the ``diverged`` column to a loaded table.
    """
    data = named_corpus(corpus)
    model = CausalTransformer(data.vocab_size, d_emb, n_layers, n_heads, context, seed=seed, device=device)
    profiles = []
    run = train_language_model(model, data, steps=steps, batch_size=batch_size, lr=lr,
                               eval_every=eval_every, eval_windows=eval_windows, min_position=min_position,
                               train_min_position=0, patience=patience, seed=seed, progress=False,
                               on_evaluate=lambda step, m: profiles.append(
                                   energy_profile(m, data.train, data.validation, n_patterns=energy_patterns,
                                                  n_points=energy_points)))
    rate = float("nan") if data.entropy_rate is None else data.entropy_rate
    rows = []
    for s, tr, va, prof in zip(run.steps, run.train_loss, run.val_loss, profiles, strict=True):
        for t in range(n_layers):
            rows.append({"step": s, "layer": t + 1, "train_loss_all": tr, "val_loss_filled": va,
                         "entropy_rate": rate, "global_energy": prof["global_energy"], "n": prof["n"],
                         **{k: float(prof[k][t]) for k in
                            ("energy_in", "energy_out", "lowered", "log_Z", "pattern_radius")}})
    return rows


@experiment("activation_geometry", version=1)
def activation_geometry(corpus: str = "english", d_emb: int = 32, n_layers: int = 2, n_heads: int = 4,
                        context: int = 32, steps: int = 3000, patience: int = 1000, batch_size: int = 16,
                        lr: float = 3e-3, eval_every: int = 100, eval_windows: int = 64,
                        sample_sizes: tuple = (50, 100, 200, 400, 800, 1600), seed: int = 0,
                        device: str = "cpu") -> list[dict]:
    r"""Nearest-neighbour distances of last-layer activations (:func:`last_layer_activations`) of
    held-out windows, before and after training, for growing samples.

    Parameters
    ----------
    corpus, d_emb, n_layers, n_heads, context : str, int, int, int, int
        The corpus (a name of :data:`assocmem.corpora.CORPORA`) and the model.
    steps, patience, batch_size, lr, eval_every, eval_windows : int, int, int, float, int, int
        Training to convergence (:func:`train_language_model`, early stopping).
    sample_sizes : tuple of int
        Numbers m of activation vectors; the first m of one draw of ``max(sample_sizes)`` windows.
    seed : int
        Seed of the model, the sampler and the windows.
    device : str
        Torch device.

    Returns
    -------
    list of dict
        One row per stage (``"init"``, ``"trained"``) and sample size: ``m``, ``nn_mean`` (mean
        distance to the nearest other activation), ``norm_mean`` (mean activation norm), ``n``
        (:math:`T d_{emb}`), ``theory_radius`` (:math:`\sqrt{n/2\pi e}`) and ``val_loss``.
    """
    sizes = check.int_array("sample_sizes", sample_sizes, minimum=2)
    data = named_corpus(corpus)
    model = CausalTransformer(data.vocab_size, d_emb, n_layers, n_heads, context, seed=seed, device=device)
    rows = []
    for stage in ("init", "trained"):
        if stage == "trained":
            train_language_model(model, data, steps=steps, batch_size=batch_size, lr=lr, eval_every=eval_every,
                                 eval_windows=eval_windows, patience=patience, seed=seed, progress=False)
        val_loss = evaluate_loss(model, data.validation, n_windows=eval_windows)
        acts = last_layer_activations(model, data.validation, int(sizes.max()), seed=seed + 1)
        norm = float(np.linalg.norm(acts, axis=1).mean())
        for m in sizes:
            rows.append({"stage": stage, "m": int(m),
                         "nn_mean": float(nearest_neighbour_distances(acts[:m]).mean()),
                         "norm_mean": norm, "n": acts.shape[1],
                         "theory_radius": float(np.sqrt(acts.shape[1] / (2 * np.pi * np.e))),
                         "val_loss": val_loss})
    return rows
