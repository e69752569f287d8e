#!/usr/bin/env python3
"""PyTorch reference for the poet-worker benchmarks: the same model, formulation, batching,
optimizer and thread count as poet-worker, written the way a PyTorch user would.

Model (as worker/src/model.rs): one-hot inputs -> L x LSTM(H) with a variational input mask
per layer (shared over time), recurrent dropout as weight-drop on whole columns of w_hh, one
torch LSTM call per layer -> dropout -> Linear(vocab). Adam (eps 1e-7), global grad-norm
clipping at 5. Windows: keras = seq_len chars every `step`, loss on the next char only;
seq = chunks of seq_len+1, loss on every position.

Modes print one JSON line each, like `cargo run --example bench`:
  train   --batches N         training chars/s over N batches (0 = an epoch) after 1 warm-up batch
  sample  --streams K --chars N   sampling chars/s with carried state (nn.LSTM, multinomial)
  quality --seconds S         train for S seconds of wall time (the reference experiment by
                              default: keras 3x300, dropout 0.2/0.2, Adam 1e-3), then print
                              poet's shared validation loss (worker/src/data.rs, eval_windows:
                              every validation char predicted from a zero state after 101-200
                              chars of context, in eval mode), for `bench/poems/vs_reference.sh`
"""
import argparse
import json
import math
import random
import time

import torch
import torch.nn.functional as F


def split_corpus(text, fraction=0.1):
    cut = int(len(text) * (1 - fraction))
    i = text.find("++++\n", cut)
    return (text[:i], text[i:]) if i >= 0 else (text, "")


class Poet(torch.nn.Module):
    def __init__(self, vocab, layers, units, dropout=0.2, recurrent_dropout=0.2):
        super().__init__()
        self.vocab, self.units = vocab, units
        self.dropout, self.rdrop = dropout, recurrent_dropout
        self.w_ih, self.w_hh, self.b_ih, self.b_hh = (torch.nn.ParameterList() for _ in range(4))
        for layer in range(layers):
            inp = vocab if layer == 0 else units
            lim = math.sqrt(6 / (inp + 4 * units))
            self.w_ih.append(torch.nn.Parameter(torch.empty(4 * units, inp).uniform_(-lim, lim)))
            self.w_hh.append(torch.nn.Parameter(torch.nn.init.orthogonal_(torch.empty(4 * units, units))))
            b = torch.zeros(4 * units)
            b[units:2 * units] = 1.0
            self.b_ih.append(torch.nn.Parameter(b))
            self.b_hh.append(torch.nn.Parameter(torch.zeros(4 * units)))
        self.dense = torch.nn.Linear(units, vocab)

    def forward(self, ids, last_only):
        b = ids.shape[0]
        x = F.one_hot(ids, self.vocab).float()
        for w_ih, w_hh, b_ih, b_hh in zip(self.w_ih, self.w_hh, self.b_ih, self.b_hh):
            if self.training and self.dropout > 0:
                x = x * (torch.empty(b, 1, x.shape[2], device=x.device).bernoulli_(1 - self.dropout) / (1 - self.dropout))
            if self.training and self.rdrop > 0:
                w_hh = w_hh * (torch.empty(1, self.units, device=x.device).bernoulli_(1 - self.rdrop) / (1 - self.rdrop))
            h0 = torch.zeros(1, b, self.units, device=x.device)
            x, _, _ = torch.lstm(x, (h0, h0), [w_ih, w_hh, b_ih, b_hh], True, 1, 0.0, self.training, False, True)
        if last_only:
            x = x[:, -1]
        return self.dense(F.dropout(x, self.dropout, self.training))


def train(args, text):
    train_text, _ = split_corpus(text)
    chars = sorted(set(train_text))
    index = {c: i for i, c in enumerate(chars)}
    dev = torch.device(args.device)
    ids = torch.tensor([index[c] for c in train_text], dtype=torch.long, device=dev)
    t = args.seq_len
    stride = args.step if args.formulation == "keras" else t
    starts = list(range(0, len(ids) - t, stride))
    random.Random(1).shuffle(starts)
    torch.manual_seed(1)
    model = Poet(len(chars), args.layers, args.units).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    keras = args.formulation == "keras"

    def run(batches, offset):
        total = 0
        for i in range(batches):
            s = torch.tensor(starts[(offset + i) * args.batch:(offset + i + 1) * args.batch], device=dev)
            win = ids[s[:, None] + torch.arange(t + 1, device=dev)]
            x, y = win[:, :t], (win[:, t] if keras else win[:, 1:])
            opt.zero_grad()
            logits = model(x, keras)
            loss = F.cross_entropy(logits.reshape(-1, len(chars)), y.reshape(-1))
            loss.backward()
            loss.item()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            total += x.numel()
        return total

    model.train()
    batches = args.batches or len(starts) // args.batch
    run(1, 0)  # warm-up: allocator, kernels
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    n = run(batches, 0)
    sync()
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"impl": "pytorch", "mode": "train", "layers": args.layers, "units": args.units,
                      "seq_len": t, "batch": args.batch, "formulation": args.formulation,
                      "batches": batches, "epoch_batches": -(-len(starts) // args.batch),
                      "threads": args.threads, "seconds": secs,
                      "chars_per_sec": n / secs, "cpu_seconds": cpu, "chars_per_cpu_sec": n / cpu}))


def quality(args, text):
    train_text, val_text = split_corpus(text)
    chars = sorted(set(train_text) | set(val_text))
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in train_text], dtype=torch.long)
    val = torch.tensor([index[c] for c in val_text], dtype=torch.long)
    t = args.seq_len
    keras = args.formulation == "keras"
    stride = args.step if keras else t
    starts = list(range(0, len(ids) - t, stride))
    torch.manual_seed(1)
    model = Poet(len(chars), args.layers, args.units, args.dropout, args.recurrent_dropout)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, eps=1e-7)
    t0 = time.perf_counter()
    batches, epoch = 0, 0
    while time.perf_counter() - t0 < args.seconds:
        random.Random(epoch).shuffle(starts)
        epoch += 1
        for b in range(0, len(starts), args.batch):
            if time.perf_counter() - t0 >= args.seconds:
                break
            model.train()
            s = torch.tensor(starts[b:b + args.batch])
            win = ids[s[:, None] + torch.arange(t + 1)]
            x, y = win[:, :t], (win[:, t] if keras else win[:, 1:])
            opt.zero_grad()
            loss = F.cross_entropy(model(x, keras).reshape(-1, len(chars)), y.reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            batches += 1
    secs = time.perf_counter() - t0
    # poet's validation measure: context c = 100, windows every 100 chars, each scoring the
    # next (up to) 100 chars after its context.
    model.eval()
    n, c, block = len(val), min(100, (len(val) - 1) // 2), 100
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, n, block):
            if start + c + 1 >= n:
                break
            k = min(block, n - 1 - start - c)
            x = val[start:start + c + k].unsqueeze(0)
            y = val[start + c + 1:start + c + k + 1]
            logits = model(x, False)[0, c:c + k]
            total += F.cross_entropy(logits, y, reduction="sum").item()
            count += k
    print(json.dumps({"impl": "pytorch", "mode": "quality", "layers": args.layers, "units": args.units,
                      "seq_len": t, "batch": args.batch, "formulation": args.formulation, "lr": args.lr,
                      "threads": args.threads, "seconds": secs, "batches": batches,
                      "epochs": batches * args.batch / max(1, len(starts)), "val_loss": total / count}))


def sample(args, text):
    chars = sorted(set(text))
    v = len(chars)
    torch.manual_seed(1)
    dev = torch.device(args.device)
    lstm = torch.nn.LSTM(v, args.units, args.layers, batch_first=True).to(dev).eval()
    dense = torch.nn.Linear(args.units, v).to(dev).eval()
    seed = ("++++\n" * (args.seq_len // 5 + 1))[:args.seq_len]
    index = {c: i for i, c in enumerate(chars)}

    def go(n):
        with torch.no_grad():
            # The context is the same for every stream: run it once, copy the state per row
            # (as poet-worker does).
            ctx = torch.tensor([[index[c] for c in seed]], device=dev)
            out, (h, c) = lstm(F.one_hot(ctx, v).float())
            state = (h.repeat(1, args.streams, 1), c.repeat(1, args.streams, 1))
            logits = dense(out[:, -1]).repeat(args.streams, 1)
            got = []
            for _ in range(n):
                probs = torch.softmax(logits / 1.0, -1)
                nxt = torch.multinomial(probs, 1)
                got.append(nxt.squeeze(1).tolist())
                out, state = lstm(F.one_hot(nxt, v).float(), state)
                logits = dense(out[:, -1])
        return got

    go(10)
    t0, c0 = time.perf_counter(), time.process_time()
    go(args.chars)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"impl": "pytorch", "mode": "sample", "layers": args.layers, "units": args.units,
                      "streams": args.streams, "chars": args.chars, "threads": args.threads, "mkldnn": args.mkldnn,
                      "seconds": secs, "chars_per_sec": args.streams * args.chars / secs,
                      "cpu_seconds": cpu, "chars_per_cpu_sec": args.streams * args.chars / cpu}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["train", "sample", "quality"])
    p.add_argument("--corpus", default="../shared/data/corpus-pd.txt")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--units", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=40)
    p.add_argument("--step", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--formulation", default="keras")
    p.add_argument("--batches", type=int, default=20, help="0 = a whole epoch")
    p.add_argument("--device", default="cpu")
    p.add_argument("--mkldnn", choices=["on", "off"], default="on",
                   help="off: plain ATen LSTM kernels instead of oneDNN's (a second CPU reference)")
    p.add_argument("--streams", type=int, default=1)
    p.add_argument("--chars", type=int, default=200)
    p.add_argument("--seconds", type=float, default=60.0, help="quality: training wall time")
    p.add_argument("--lr", type=float, default=1e-3, help="quality: Adam learning rate")
    p.add_argument("--dropout", type=float, default=0.2, help="quality")
    p.add_argument("--recurrent-dropout", type=float, default=0.2, help="quality")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.backends.mkldnn.enabled = args.mkldnn == "on"
    text = open(args.corpus, encoding="utf-8").read()
    {"train": train, "sample": sample, "quality": quality}[args.mode](args, text)


if __name__ == "__main__":
    main()
